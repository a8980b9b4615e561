//! The qmgr → smar link: routing and alias expansion (to be defined).
