//! Names for shared memory, so a trace line says `mbox.seq` or `shm.pipe3.g2h.write` instead of
//! `shm+9736`. Regions are named when allocated; components name the fields inside them (a ring
//! header's cursors and flags, a mailbox's words, a data area). Names are kept as data, by
//! absolute address, and only turned into text when a trace line is written.
//!
//! Fields do not nest: naming a range replaces every field it overlaps (a pipe placed where a
//! freed pipe was takes over its addresses).

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

#[derive(Clone)]
struct Named {
    end: u64,
    name: Rc<str>,
}

#[derive(Default)]
pub struct AddrNames {
    regions: BTreeMap<u64, Named>,
    fields: BTreeMap<u64, Named>,
}

fn containing(map: &BTreeMap<u64, Named>, addr: u64) -> Option<(u64, &Named)> {
    map.range(..=addr)
        .next_back()
        .filter(|(_, n)| addr < n.end)
        .map(|(start, n)| (*start, n))
}

impl AddrNames {
    /// A freshly allocated region `[base, base + len)`.
    pub fn region(&mut self, base: u64, len: u64, name: &str) {
        if len > 0 {
            self.regions.insert(
                base,
                Named {
                    end: base.saturating_add(len),
                    name: Rc::from(name),
                },
            );
        }
    }

    /// Names the field `[start, start + len)`, replacing any field it overlaps.
    pub fn field(&mut self, start: u64, len: u64, name: &str) {
        if len == 0 {
            return;
        }
        let end = start.saturating_add(len);
        // Fields never overlap, so walking down from `end` the overlapping ones come first.
        let overlapping: Vec<u64> = self
            .fields
            .range(..end)
            .rev()
            .take_while(|(_, n)| n.end > start)
            .map(|(s, _)| *s)
            .collect();
        for s in overlapping {
            self.fields.remove(&s);
        }
        self.fields.insert(
            start,
            Named {
                end,
                name: Rc::from(name),
            },
        );
    }

    /// Where an access of `len` bytes at `addr` falls, ready to print.
    pub fn place(&self, addr: u64, len: u64) -> Place {
        let region = containing(&self.regions, addr).map(|(b, n)| (b, n.name.clone(), n.end));
        let field = containing(&self.fields, addr)
            .filter(|(_, n)| addr.saturating_add(len) <= n.end)
            .map(|(s, n)| (s, n.name.clone(), n.end - s == len && s == addr));
        Place {
            addr,
            len,
            region,
            field,
        }
    }
}

/// A printable location: `region.field` (the whole field), `region.field+k` (inside a field),
/// `region+offset` (unnamed), or the raw address outside every region.
pub struct Place {
    addr: u64,
    len: u64,
    /// (base, name, end)
    region: Option<(u64, Rc<str>, u64)>,
    /// (field start, name, whether the access covers exactly the field)
    field: Option<(u64, Rc<str>, bool)>,
}

impl Place {
    /// Whether the access is exactly one named field, or a whole unnamed region (its width then
    /// goes without saying).
    pub fn is_whole_field(&self) -> bool {
        match (&self.field, &self.region) {
            (Some(f), _) => f.2,
            (None, Some(r)) => self.whole_region(r),
            (None, None) => false,
        }
    }

    fn whole_region(&self, (base, _, end): &(u64, Rc<str>, u64)) -> bool {
        self.addr == *base && self.addr.saturating_add(self.len) == *end
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.region, &self.field) {
            (Some((_, r, _)), Some((start, name, _))) => {
                write!(f, "{r}.{name}")?;
                if self.addr > *start {
                    write!(f, "+{}", self.addr - start)?;
                }
                Ok(())
            }
            (None, Some((start, name, _))) => {
                write!(f, "{name}")?;
                if self.addr > *start {
                    write!(f, "+{}", self.addr - start)?;
                }
                Ok(())
            }
            (Some(region), None) if self.whole_region(region) => write!(f, "{}", region.1),
            (Some((base, r, _)), None) => write!(f, "{r}+{}", self.addr - base),
            (None, None) => write!(f, "{:#x}", self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_accesses_and_replace_what_they_overlap() {
        let mut n = AddrNames::default();
        n.region(100, 64, "mbox");
        n.field(100, 8, "seq");
        n.field(124, 24, "payload");
        assert_eq!(n.place(100, 8).to_string(), "mbox.seq");
        assert!(n.place(100, 8).is_whole_field());
        assert_eq!(n.place(130, 4).to_string(), "mbox.payload+6");
        assert!(!n.place(130, 4).is_whole_field());
        assert_eq!(n.place(108, 8).to_string(), "mbox+8");
        assert_eq!(n.place(7, 8).to_string(), "0x7");
        // A whole unnamed region goes by its name.
        n.region(8, 8, "x");
        assert_eq!(n.place(8, 8).to_string(), "x");
        assert!(n.place(8, 8).is_whole_field());
        assert_eq!(n.place(8, 4).to_string(), "x+0");
        // A new field over part of the payload replaces it.
        n.field(120, 8, "other");
        assert_eq!(n.place(130, 4).to_string(), "mbox+30");
        assert_eq!(n.place(120, 8).to_string(), "mbox.other");
        assert_eq!(n.place(100, 8).to_string(), "mbox.seq");
    }
}
