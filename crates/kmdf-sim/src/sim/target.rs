//! (filled in by its owner: the programmable target device)
