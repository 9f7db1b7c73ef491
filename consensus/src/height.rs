//! Block heights.

use core::fmt;

/// A block's height: the number of blocks before it (genesis is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Height(u32);

impl Height {
    /// The genesis block's height.
    pub const GENESIS: Self = Self(0);

    /// Wraps a height.
    #[must_use]
    pub const fn new(height: u32) -> Self {
        Self(height)
    }

    /// The height as a number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The height `blocks` later, or `None` past `u32::MAX`.
    #[must_use]
    pub const fn checked_add(self, blocks: u32) -> Option<Self> {
        match self.0.checked_add(blocks) {
            Some(h) => Some(Self(h)),
            None => None,
        }
    }

    /// The height `blocks` earlier, or `None` below genesis.
    #[must_use]
    pub const fn checked_sub(self, blocks: u32) -> Option<Self> {
        match self.0.checked_sub(blocks) {
            Some(h) => Some(Self(h)),
            None => None,
        }
    }

    /// The next height, saturating at `u32::MAX`.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Height> for u32 {
    fn from(height: Height) -> Self {
        height.0
    }
}
