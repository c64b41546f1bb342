//! Parabit's wallet (being built).
