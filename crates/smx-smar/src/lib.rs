//! smx-smar
