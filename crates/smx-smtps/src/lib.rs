//! smx-smtps
