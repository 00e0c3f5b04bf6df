//! The property, checked after every step (see the module above): what a vat sends, the
//! events it reports and whether its connections stay open all agree with what `handle`
//! returned; the honest vats never refuse each other; at the end nothing is left over.

use super::{ALICE, CAROL, HOSTILE, World, vat_id};
use crate::error::ProtocolError;
use crate::vat::{VatEvent, VatId};
use crate::wire::{Exception, Message, Release, decode, encode};
use std::collections::{BTreeMap, BTreeSet};

impl World<'_> {
    /// Delivers `msg` from `from` to honest vat `i` and checks the outcome.
    pub(super) fn handle(
        &mut self,
        i: usize,
        from: VatId,
        msg: Message,
    ) -> Result<(), ProtocolError> {
        let before: BTreeSet<VatId> = self.vats[i].peers().into_iter().collect();
        let was_connected = before.contains(&from);
        let is_abort = matches!(msg, Message::Abort(_));
        let shown = format!("{msg:?}");
        if self.trace {
            eprintln!("{from} -> {}: {shown}", vat_id(i));
        }
        let result = self.vats[i].handle(from, msg);
        let vat = vat_id(i);
        if !was_connected {
            assert_eq!(
                result,
                Err(ProtocolError::Closed),
                "vat {vat}: a message from {from} on a closed connection must be refused as Closed"
            );
            self.quiet(i, "a message on a closed connection");
            return result;
        }
        let aborted = self.collect(i, &before);
        match &result {
            Err(e) => {
                let expected = e.to_exception();
                assert!(
                    !expected.reason.is_empty(),
                    "vat {vat}: error {e:?} has an empty reason"
                );
                assert_eq!(
                    aborted.get(&from),
                    Some(&expected),
                    "vat {vat}: handle({from}, {shown}) failed with {e:?} but the last message \
                     to {from} is not an Abort with its reason"
                );
                assert!(
                    e.is_peer_fault(),
                    "vat {vat}: handle({from}, {shown}) reported an engine fault: {e:?}"
                );
                assert!(
                    !self.vats[i].is_connected(from),
                    "vat {vat}: handle({from}, {shown}) failed with {e:?} but the connection is open"
                );
                // A closed connection refuses everything, quietly.
                let again = self.vats[i].handle(
                    from,
                    Message::Release(Release {
                        id: 0,
                        reference_count: 1,
                    }),
                );
                assert_eq!(
                    again,
                    Err(ProtocolError::Closed),
                    "vat {vat}: a message after the abort must be refused as Closed"
                );
                self.quiet(i, "a message after the abort");
            }
            Ok(()) => {
                assert!(
                    !aborted.contains_key(&from),
                    "vat {vat}: handle({from}, {shown}) returned Ok but aborted the connection \
                     with {:?}",
                    aborted.get(&from)
                );
                if is_abort {
                    assert!(
                        !self.vats[i].is_connected(from),
                        "vat {vat}: the connection to {from} is open after its Abort"
                    );
                }
            }
        }
        result
    }

    /// Checks that vat `i` sent nothing and reported nothing (after refusing a message).
    fn quiet(&mut self, i: usize, what: &str) {
        let vat = vat_id(i);
        let out = self.vats[i].take_outgoing();
        assert!(out.is_empty(), "vat {vat}: {what} made it send {out:?}");
        let events = self.vats[i].take_events();
        assert!(
            events.is_empty(),
            "vat {vat}: {what} produced events {events:?}"
        );
    }

    pub(super) fn deliver(&mut self, link: usize) {
        let Some(msg) = self.links[link].pop_front() else {
            return;
        };
        // Link 0 carries Alice's messages to Carol.
        let (to, from) = if link == 0 { (1, ALICE) } else { (0, CAROL) };
        if !self.vats[to].is_connected(from) {
            return; // the receiver closed: the message is lost with the connection
        }
        let shown = format!("{msg:?}");
        let result = self.handle(to, from, msg);
        assert!(
            result.is_ok(),
            "vat {} refused {shown} from vat {from}: {result:?} (the hostile vat must not be \
             able to break the honest vats' connection)",
            vat_id(to)
        );
    }

    /// Takes what vat `i` sent and what happened, checks it, and passes it on. `before` is the
    /// set of peers it was connected to when the step began. Returns the connections it
    /// aborted in this step, with the exception of each `Abort`.
    pub(super) fn collect(
        &mut self,
        i: usize,
        before: &BTreeSet<VatId>,
    ) -> BTreeMap<VatId, Exception> {
        let vat = vat_id(i);
        let mut aborted: BTreeMap<VatId, Exception> = BTreeMap::new();
        let mut disconnected = BTreeSet::new();
        // Taking in a call's capabilities may give old ones back (`keep_cap`), which sends
        // more: go on until the vat is quiet.
        loop {
            let out = self.vats[i].take_outgoing();
            let events = self.vats[i].take_events();
            if out.is_empty() && events.is_empty() {
                break;
            }
            for (to, m) in out {
                self.check_sent(i, to, m, before, &mut aborted);
            }
            for ev in events {
                self.check_event(i, ev, before, &aborted, &mut disconnected);
            }
        }
        for peer in before {
            if !self.vats[i].is_connected(*peer) {
                assert!(
                    disconnected.contains(peer),
                    "vat {vat} closed the connection to {peer} without a Disconnected event"
                );
            }
        }
        for peer in aborted.keys() {
            assert!(
                !self.vats[i].is_connected(*peer),
                "vat {vat} sent {peer} an Abort but kept the connection open"
            );
        }
        aborted
    }

    /// One message vat `i` sent to `to`: checked, then passed on.
    fn check_sent(
        &mut self,
        i: usize,
        to: VatId,
        m: Message,
        before: &BTreeSet<VatId>,
        aborted: &mut BTreeMap<VatId, Exception>,
    ) {
        let vat = vat_id(i);
        if self.trace {
            eprintln!("    {vat} -> {to}: {m:?}");
        }
        assert!(
            before.contains(&to) && !aborted.contains_key(&to),
            "vat {vat} sent {m:?} to vat {to} on a closed connection"
        );
        let bytes = encode(&m);
        match decode(&bytes) {
            Ok(back) => assert_eq!(back, m, "vat {vat}: {m:?} does not survive the codec"),
            Err(e) => panic!("vat {vat} sent {m:?}, which does not decode: {e}"),
        }
        *self.stats.sent.entry(m.kind()).or_default() += 1;
        if let Message::Abort(e) = &m {
            assert!(
                !e.reason.is_empty(),
                "vat {vat} aborted {to} without a reason"
            );
            aborted.insert(to, e.clone());
            self.stats.aborts += 1;
        }
        match to {
            HOSTILE => self.seen[i].observe(&m),
            _ => self.links[i].push_back(m),
        }
    }

    /// One event of vat `i`: checked, and a call handed to the application.
    fn check_event(
        &mut self,
        i: usize,
        ev: VatEvent,
        before: &BTreeSet<VatId>,
        aborted: &BTreeMap<VatId, Exception>,
        disconnected: &mut BTreeSet<VatId>,
    ) {
        let vat = vat_id(i);
        if self.trace {
            eprintln!("    {vat} event: {ev:?}");
        }
        match ev {
            VatEvent::Call {
                call, object, caps, ..
            } => {
                assert!(
                    self.apps[i].objects().hosts(object),
                    "vat {vat} delivered a call to object {object}, which it does not host"
                );
                self.stats.app_calls += 1;
                self.apps[i].called(&mut self.vats[i], call, caps);
            }
            VatEvent::Cancelled { .. } => {}
            VatEvent::Disconnected {
                peer,
                reason,
                by_peer,
            } => {
                assert!(
                    before.contains(&peer) && disconnected.insert(peer),
                    "vat {vat} reported the connection to {peer} lost twice"
                );
                assert!(
                    !self.vats[i].is_connected(peer),
                    "vat {vat} reported the connection to {peer} lost, but it is open"
                );
                if let Some(e) = aborted.get(&peer) {
                    assert!(
                        !by_peer && reason == *e,
                        "vat {vat} aborted {peer} with {e:?} but reported {reason:?}"
                    );
                }
            }
        }
    }

    /// Once every connection is closed and the applications gave everything back, the vats
    /// hold nothing: no capability, answer, local call or handoff left over.
    pub(super) fn check_nothing_left(&self) {
        for (i, vat) in self.vats.iter().enumerate() {
            assert_eq!(
                (vat.live_counts(), vat.pending_handoffs()),
                ((0, 0, 0), 0),
                "vat {}: (nodes, results, calls) and handoffs left after everything was closed \
                 and given back",
                vat_id(i)
            );
        }
    }
}
