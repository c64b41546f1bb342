//! Parabit's durable store (being built).
