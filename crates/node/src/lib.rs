//! Parabit's node (being built).
