//! The qmgr → smtpc link: delivery transactions (to be defined).
