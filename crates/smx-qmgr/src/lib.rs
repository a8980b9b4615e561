//! smx-qmgr
