//! Loading the guest image: a static x86-64 ELF executable whose `PT_LOAD` segments are copied
//! to their physical addresses. The image is an input file, so every field is checked and every
//! failure is a typed error.

use crate::ram::GuestRam;
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum ElfError {
    Truncated(&'static str),
    NotElf64LittleEndian,
    NotX86_64Executable,
    /// A segment whose file bytes lie outside the image.
    SegmentOutsideFile {
        index: usize,
    },
    /// A segment that would land outside `[lowest, limit)`.
    SegmentOutsideLoadArea {
        index: usize,
        start: u64,
        end: u64,
    },
    NoLoadableSegment,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated(what) => write!(f, "ELF image truncated in {what}"),
            ElfError::NotElf64LittleEndian => f.write_str("not a little-endian ELF64 image"),
            ElfError::NotX86_64Executable => f.write_str("not an x86-64 executable (ET_EXEC)"),
            ElfError::SegmentOutsideFile { index } => {
                write!(f, "program header {index} points outside the file")
            }
            ElfError::SegmentOutsideLoadArea { index, start, end } => write!(
                f,
                "segment {index} at {start:#x}..{end:#x} is outside the guest's load area"
            ),
            ElfError::NoLoadableSegment => f.write_str("no PT_LOAD segment"),
        }
    }
}

impl std::error::Error for ElfError {}

fn field<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], ElfError> {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated(what))
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(field(b, at, what)?))
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(field(b, at, what)?))
}

fn u64_at(b: &[u8], at: usize, what: &'static str) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(field(b, at, what)?))
}

/// A segment to load: file bytes `offset..offset+file_len` go to `paddr`, zero-filled to
/// `mem_len`.
#[derive(Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub file_len: u64,
    pub mem_len: u64,
}

/// The entry point and loadable segments of `image`, each checked to lie in `[lowest, limit)`.
pub fn parse(image: &[u8], lowest: u64, limit: u64) -> Result<(u64, Vec<Segment>), ElfError> {
    if field::<4>(image, 0, "the identification")? != *b"\x7fELF"
        || image.get(4) != Some(&2)
        || image.get(5) != Some(&1)
    {
        return Err(ElfError::NotElf64LittleEndian);
    }
    if u16_at(image, 16, "e_type")? != 2 || u16_at(image, 18, "e_machine")? != 62 {
        return Err(ElfError::NotX86_64Executable);
    }
    let entry = u64_at(image, 24, "e_entry")?;
    let phoff = u64_at(image, 32, "e_phoff")?;
    let phentsize = u16_at(image, 54, "e_phentsize")? as u64;
    let phnum = u16_at(image, 56, "e_phnum")? as u64;
    let mut segments = Vec::new();
    for index in 0..phnum as usize {
        let at = phoff
            .checked_add(index as u64 * phentsize)
            .and_then(|a| usize::try_from(a).ok())
            // A whole header's reach, so the field offsets below cannot overflow.
            .filter(|a| a.checked_add(56).is_some())
            .ok_or(ElfError::Truncated("the program headers"))?;
        if u32_at(image, at, "p_type")? != 1 {
            continue;
        }
        let seg = Segment {
            offset: u64_at(image, at + 8, "p_offset")?,
            paddr: u64_at(image, at + 24, "p_paddr")?,
            file_len: u64_at(image, at + 32, "p_filesz")?,
            mem_len: u64_at(image, at + 40, "p_memsz")?,
        };
        let file_end = seg.offset.checked_add(seg.file_len);
        if file_end.is_none_or(|end| end > image.len() as u64) || seg.file_len > seg.mem_len {
            return Err(ElfError::SegmentOutsideFile { index });
        }
        let end = seg.paddr.saturating_add(seg.mem_len);
        if seg.paddr < lowest || end > limit {
            return Err(ElfError::SegmentOutsideLoadArea {
                index,
                start: seg.paddr,
                end,
            });
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegment);
    }
    Ok((entry, segments))
}

/// Copies `image`'s segments into fresh guest RAM; returns the entry point. Each segment's
/// zero tail (`.bss`) is left as the fresh mapping has it, zero, which spares touching the
/// guest's heap pages.
pub fn load_fresh(
    ram: &GuestRam,
    image: &[u8],
    lowest: u64,
    limit: u64,
) -> Result<u64, crate::KvmError> {
    let (entry, segments) = parse(image, lowest, limit)?;
    for s in &segments {
        // In the file: `parse` checked `offset + file_len <= image.len()`.
        let bytes = &image[s.offset as usize..(s.offset + s.file_len) as usize];
        ram.write(s.paddr, bytes)?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(paddr: u64, data: &[u8], mem_len: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&paddr.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&mem_len.to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn a_segment_is_checked_against_the_file_and_the_load_area() {
        let good = image(0x1000, &[1, 2, 3], 16);
        let (entry, segs) = parse(&good, 0x1000, 0x2000).expect("valid image");
        assert_eq!(entry, 0x1000);
        assert_eq!(segs.len(), 1);
        assert_eq!(
            parse(&good, 0x2000, 0x3000),
            Err(ElfError::SegmentOutsideLoadArea {
                index: 0,
                start: 0x1000,
                end: 0x1010
            })
        );
        let short = image(0x1000, &[1, 2, 3], 2);
        assert_eq!(
            parse(&short, 0, u64::MAX),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
        assert!(matches!(
            parse(b"\x7fELF", 0, 1),
            Err(ElfError::NotElf64LittleEndian)
        ));
        let mut far = good.clone();
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&far, 0, u64::MAX),
            Err(ElfError::Truncated(_))
        ));
        for cut in 0..good.len() {
            assert!(parse(&good[..cut], 0, u64::MAX).is_err(), "cut at {cut}");
        }
    }
}
