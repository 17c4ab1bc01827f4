//! A bounded, iterative check of MaxMind DB values, run before the `maxminddb` decoder reads
//! them.
//!
//! The decoder is fast because it trusts the file: it skips unwanted fields by recursing
//! through pointers with no depth limit (a pointer cycle overflows the stack and aborts the
//! process, which no `catch_unwind` can stop), adds sizes without overflow checks, and adds 7
//! to an extended-type byte in a `u8`. This walk reads the same encoding with an explicit
//! stack, a depth limit and a work budget, so a value it accepts is finite, shallow and inside
//! its section, and the decoder can then read it safely.

/// Nesting deeper than this (containers and pointer hops) is taken for a pointer cycle; real
/// records nest a handful of levels.
const MAX_DEPTH: usize = 64;

/// Values one record may contain, pointers followed; a GeoIP2 City record has a few hundred.
/// Bounds the work a record whose pointers fan out repeatedly can cause.
const MAX_VALUES: usize = 100_000;

const TYPE_EXTENDED: u8 = 0;
const TYPE_POINTER: u8 = 1;
const TYPE_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_BYTES: u8 = 4;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_INT32: u8 = 8;
const TYPE_UINT64: u8 = 9;
const TYPE_UINT128: u8 = 10;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOL: u8 = 14;
const TYPE_FLOAT: u8 = 15;

/// What is still to be read.
enum Frame {
    /// `left` more values follow at the cursor; `pointed` when this is the one value a pointer
    /// leads to (which may not itself be a pointer).
    Values { left: usize, pointed: bool },
    /// Continue after a pointer once the value it leads to has been read.
    Resume { at: usize },
}

/// Checks the value at `offset` of `section` (the data section, or the metadata section;
/// pointers are offsets from the section's start and must stay inside it).
pub(super) fn check_value(section: &[u8], offset: usize) -> Result<(), String> {
    let mut reader = Cursor {
        section,
        at: offset,
    };
    let mut stack = vec![Frame::Values {
        left: 1,
        pointed: false,
    }];
    let mut values = 0usize;
    while let Some(frame) = stack.last_mut() {
        let pointed = match frame {
            Frame::Resume { at } => {
                reader.at = *at;
                stack.pop();
                continue;
            }
            Frame::Values { left: 0, .. } => {
                stack.pop();
                continue;
            }
            Frame::Values { left, pointed } => {
                *left -= 1;
                *pointed
            }
        };
        values += 1;
        if values > MAX_VALUES {
            return Err(format!(
                "the value at data offset {offset} holds more than {MAX_VALUES} values"
            ));
        }
        if stack.len() > MAX_DEPTH {
            return Err(format!(
                "the value at data offset {offset} nests more than {MAX_DEPTH} levels \
                 (a pointer cycle?)"
            ));
        }
        let value_at = reader.at;
        let (type_num, size) = reader.header()?;
        match type_num {
            TYPE_POINTER => {
                if pointed {
                    return Err(format!("pointer to a pointer at offset {value_at}"));
                }
                let target = reader.pointer(size)?;
                if target >= section.len() {
                    return Err(format!(
                        "pointer at offset {value_at} leads outside its section"
                    ));
                }
                stack.push(Frame::Resume { at: reader.at });
                stack.push(Frame::Values {
                    left: 1,
                    pointed: true,
                });
                reader.at = target;
            }
            TYPE_MAP => stack.push(Frame::Values {
                left: size * 2,
                pointed: false,
            }),
            TYPE_ARRAY => stack.push(Frame::Values {
                left: size,
                pointed: false,
            }),
            TYPE_STRING | TYPE_BYTES => reader.skip(size)?,
            TYPE_DOUBLE if size == 8 => reader.skip(size)?,
            TYPE_FLOAT if size == 4 => reader.skip(size)?,
            TYPE_UINT16 if size <= 2 => reader.skip(size)?,
            TYPE_UINT32 | TYPE_INT32 if size <= 4 => reader.skip(size)?,
            TYPE_UINT64 if size <= 8 => reader.skip(size)?,
            TYPE_UINT128 if size <= 16 => reader.skip(size)?,
            TYPE_BOOL if size <= 1 => {}
            _ => {
                return Err(format!(
                    "invalid value (type {type_num}, size {size}) at offset {value_at}"
                ));
            }
        }
    }
    Ok(())
}

struct Cursor<'a> {
    section: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = self
            .section
            .get(self.at)
            .copied()
            .ok_or_else(|| format!("a value runs past its section at offset {}", self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, size: usize) -> Result<(), String> {
        self.at = self
            .at
            .checked_add(size)
            .filter(|&end| end <= self.section.len())
            .ok_or_else(|| format!("a value runs past its section at offset {}", self.at))?;
        Ok(())
    }

    /// The control byte (and extended-type byte) and the size that follows.
    fn header(&mut self) -> Result<(u8, usize), String> {
        let control = self.byte()?;
        let mut type_num = control >> 5;
        if type_num == TYPE_EXTENDED {
            let extended = self.byte()?;
            // Extended types are 8..=15, stored minus 7.
            if !(1..=8).contains(&extended) {
                return Err(format!("invalid extended type {extended}"));
            }
            type_num = extended + 7;
        }
        let low = usize::from(control & 0x1f);
        if type_num == TYPE_POINTER {
            // The decoder reads size bytes for every type; for a pointer the low bits are part
            // of the pointer, and values that would be read as a longer size are not valid.
            if low >= 29 {
                return Err(format!("invalid pointer control byte {control:#04x}"));
            }
            return Ok((type_num, low));
        }
        let size = match low {
            0..=28 => low,
            29 => 29 + usize::from(self.byte()?),
            30 => 285 + ((usize::from(self.byte()?) << 8) | usize::from(self.byte()?)),
            _ => {
                let (a, b, c) = (self.byte()?, self.byte()?, self.byte()?);
                65_821 + ((usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c))
            }
        };
        Ok((type_num, size))
    }

    /// The target of a pointer whose control bits are `size`.
    fn pointer(&mut self, size: usize) -> Result<usize, String> {
        let extra = (size >> 3) & 0x3;
        let mut value = if extra == 3 { 0 } else { size & 0x7 };
        for _ in 0..=extra {
            value = (value << 8) | usize::from(self.byte()?);
        }
        Ok(value
            + match extra {
                1 => 2_048,
                2 => 526_336,
                _ => 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8]) {
        assert_eq!(check_value(bytes, 0), Ok(()), "{bytes:02x?}");
    }

    fn err(bytes: &[u8], needle: &str) {
        match check_value(bytes, 0) {
            Err(e) => assert!(e.contains(needle), "{bytes:02x?}: {e}"),
            Ok(()) => panic!("{bytes:02x?} was accepted"),
        }
    }

    #[test]
    fn well_formed_values() {
        // {"cc": "PT"}
        ok(&[0xe1, 0x42, b'c', b'c', 0x42, b'P', b'T']);
        // uint16 0x1234, uint32 of 3 bytes, bool true, double, float, int32 (extended 1)
        ok(&[0xa2, 0x12, 0x34]);
        ok(&[0xc3, 1, 2, 3]);
        ok(&[0x01, 0x07]);
        ok(&[0x68, 0, 0, 0, 0, 0, 0, 0, 0]);
        ok(&[0x04, 0x08, 0, 0, 0, 0]);
        ok(&[0x04, 0x01, 1, 2, 3, 4]);
        // {"k": pointer to offset 6}, a padding byte, and the string "v" at offset 6.
        ok(&[0xe1, 0x41, b'k', 0x20, 0x06, 0, 0x41, b'v']);
        // A long string (size 29 + 1).
        let mut long = vec![0x5d, 1];
        long.extend_from_slice(&[b'x'; 30]);
        ok(&long);
    }

    #[test]
    fn malformed_values() {
        // String longer than the section.
        err(&[0x45, b'a'], "runs past");
        // Map whose second value is missing.
        err(&[0xe1, 0x41, b'k'], "runs past");
        // Extended type byte that would overflow the decoder's u8.
        err(&[0x00, 0xff], "invalid extended type");
        // Data-cache container and end marker are not values.
        err(&[0x00, 0x05], "invalid value");
        err(&[0x00, 0x06], "invalid value");
        // Double of the wrong size, bool of size 2.
        err(&[0x64, 0, 0, 0, 0], "invalid value");
        err(&[0x02, 0x07], "invalid value");
        // Pointer out of the section, pointer to a pointer.
        err(&[0x20, 0x40], "outside its section");
        err(&[0x20, 0x02, 0x20, 0x00], "pointer to a pointer");
        // A pointer control byte with size-extension bits.
        err(&[0x3d, 0, 0, 0, 0], "invalid pointer control byte");
    }

    #[test]
    fn pointer_cycles_and_fan_out_are_bounded() {
        // A map whose value points back at the map itself.
        err(&[0xe1, 0x41, b'k', 0x20, 0x00], "nests more than");
        // An array of 20 pointers to itself: exponential if followed naively.
        let mut fan = vec![0x14, 0x04];
        for _ in 0..20 {
            fan.extend_from_slice(&[0x20, 0x00]);
        }
        assert!(check_value(&fan, 0).is_err());
        // A huge declared map in a tiny section fails on the bytes, not on memory.
        err(&[0xff, 0xff, 0xff, 0xff], "runs past");
    }

    #[test]
    fn offsets_past_the_end() {
        assert!(check_value(&[], 0).is_err());
        assert!(check_value(&[0x41, b'a'], 2).is_err());
        assert!(check_value(&[0x41, b'a'], usize::MAX).is_err());
    }
}
