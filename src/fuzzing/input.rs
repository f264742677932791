//! Reads fuzz input as a stream of small decisions. Running out of input is
//! not an error: every read then yields zeros, so any byte string is a valid
//! input and short ones mean "the plainest choice everywhere".

/// The unread rest of one fuzz input.
#[derive(Debug)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps one fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    /// The next eight bytes as a big-endian number (zeros past the end).
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| (n << 8) | u64::from(self.byte()))
    }

    /// The next four bytes as a big-endian number (zeros past the end).
    pub fn u32(&mut self) -> u32 {
        (0..4).fold(0, |n, _| (n << 8) | u32::from(self.byte()))
    }

    /// Up to `len` bytes (fewer once the input runs out).
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        taken
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}
