//! kubeftp-server: see README.md
