//! smx-smtpc
