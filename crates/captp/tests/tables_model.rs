//! The four tables against trivially simple reference models (a `Vec` of entries scanned
//! linearly) under random operation sequences, and each pair of mirrored tables (questions ↔
//! answers, exports ↔ imports) run against each other over FIFO queues in random interleavings,
//! checking the protocol's reuse and reference-count rules hold end to end.
#![allow(clippy::unwrap_used)]

use captp::ProtocolError as E;
use captp::tables::{Answer, Question};
use captp::wire::Release;
use captp::{Answers, Exports, Imports, Questions};
use proptest::prelude::*;
use std::collections::VecDeque;

fn lowest_unused(used: impl Iterator<Item = u32> + Clone) -> u32 {
    (0..).find(|id| !used.clone().any(|u| u == *id)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Questions

#[derive(Clone, Debug)]
enum QOp {
    Ask,
    Return(u32, bool),
    Finish(u32),
}

fn q_op() -> impl Strategy<Value = QOp> {
    prop_oneof![
        2 => Just(QOp::Ask),
        2 => (0u32..8, any::<bool>()).prop_map(|(id, nfn)| QOp::Return(id, nfn)),
        2 => (0u32..8).prop_map(QOp::Finish),
    ]
}

/// (id, returned, finish_sent)
type QModel = Vec<(u32, bool, bool)>;

fn q_model(m: &mut QModel, op: &QOp) -> Result<u32, E> {
    match *op {
        QOp::Ask => {
            let id = lowest_unused(m.iter().map(|e| e.0));
            m.push((id, false, false));
            Ok(id)
        }
        QOp::Return(id, nfn) => {
            let i = m
                .iter()
                .position(|e| e.0 == id)
                .ok_or(E::ReturnForUnknownQuestion { id })?;
            if m[i].1 {
                return Err(E::DuplicateReturn { id });
            }
            m[i].1 = true;
            let retire = m[i].2 || nfn;
            if retire {
                m.remove(i);
            }
            Ok(retire as u32)
        }
        QOp::Finish(id) => {
            let i = m
                .iter()
                .position(|e| e.0 == id)
                .ok_or(E::FinishForUnknownQuestion { id })?;
            if m[i].2 {
                return Err(E::FinishAlreadySent { id });
            }
            m[i].2 = true;
            let retire = m[i].1;
            if retire {
                m.remove(i);
            }
            Ok(retire as u32)
        }
    }
}

fn q_real(t: &mut Questions, op: &QOp) -> Result<u32, E> {
    match *op {
        QOp::Ask => t.ask(),
        QOp::Return(id, nfn) => t.on_return(id, nfn).map(u32::from),
        QOp::Finish(id) => t.finish(id).map(u32::from),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

#[derive(Clone, Debug)]
enum AOp {
    Question(u32),
    Return(u32, bool),
    Finish(u32),
}

fn a_op() -> impl Strategy<Value = AOp> {
    prop_oneof![
        (0u32..6).prop_map(AOp::Question),
        (0u32..6, any::<bool>()).prop_map(|(id, nfn)| AOp::Return(id, nfn)),
        (0u32..6).prop_map(AOp::Finish),
    ]
}

/// Live entries (id, returned, finish_received), and IDs retired by a noFinishNeeded return
/// whose optional Finish has not come yet.
#[derive(Default)]
struct AModel {
    live: Vec<(u32, bool, bool)>,
    optional: Vec<u32>,
}

fn a_model(m: &mut AModel, op: &AOp) -> Result<bool, E> {
    match *op {
        AOp::Question(id) => {
            if m.live.iter().any(|e| e.0 == id) {
                return Err(E::DuplicateQuestion { id });
            }
            m.optional.retain(|&o| o != id);
            m.live.push((id, false, false));
            Ok(false)
        }
        AOp::Return(id, nfn) => {
            let i = m
                .live
                .iter()
                .position(|e| e.0 == id)
                .ok_or(E::ReturnForUnknownAnswer { id })?;
            if m.live[i].1 {
                return Err(E::ReturnAlreadySent { id });
            }
            m.live[i].1 = true;
            if m.live[i].2 {
                m.live.remove(i);
                Ok(true)
            } else if nfn {
                m.live.remove(i);
                m.optional.push(id);
                Ok(true)
            } else {
                Ok(false)
            }
        }
        AOp::Finish(id) => {
            let Some(i) = m.live.iter().position(|e| e.0 == id) else {
                if let Some(j) = m.optional.iter().position(|&o| o == id) {
                    m.optional.remove(j);
                    return Ok(true);
                }
                return Err(E::FinishForUnknownAnswer { id });
            };
            if m.live[i].2 {
                return Err(E::DuplicateFinish { id });
            }
            m.live[i].2 = true;
            if m.live[i].1 {
                m.live.remove(i);
                return Ok(true);
            }
            Ok(false)
        }
    }
}

fn a_real(t: &mut Answers, op: &AOp) -> Result<bool, E> {
    match *op {
        AOp::Question(id) => t.on_question(id).map(|()| false),
        AOp::Return(id, nfn) => t.send_return(id, nfn),
        AOp::Finish(id) => t.on_finish(id),
    }
}

// ---------------------------------------------------------------------------------------------
// Exports and imports

#[derive(Clone, Debug)]
enum EOp {
    Export(u8),
    Release(u32, u32),
}

fn e_op() -> impl Strategy<Value = EOp> {
    prop_oneof![
        3 => (0u8..5).prop_map(EOp::Export),
        2 => (0u32..6, 0u32..4).prop_map(|(id, n)| EOp::Release(id, n)),
    ]
}

/// (id, object, refcount)
type EModel = Vec<(u32, u8, u32)>;

fn e_model(m: &mut EModel, op: &EOp) -> Result<(u32, Option<u8>), E> {
    match *op {
        EOp::Export(obj) => {
            if let Some(e) = m.iter_mut().find(|e| e.1 == obj) {
                e.2 += 1;
                return Ok((e.0, None));
            }
            let id = lowest_unused(m.iter().map(|e| e.0));
            m.push((id, obj, 1));
            Ok((id, None))
        }
        EOp::Release(id, n) => {
            let i = m
                .iter()
                .position(|e| e.0 == id)
                .ok_or(E::ReleaseOfUnknownExport { id })?;
            if n > m[i].2 {
                return Err(E::OverRelease {
                    id,
                    held: m[i].2,
                    released: n,
                });
            }
            m[i].2 -= n;
            if m[i].2 == 0 {
                let obj = m.remove(i).1;
                return Ok((id, Some(obj)));
            }
            Ok((id, None))
        }
    }
}

fn e_real(t: &mut Exports<u8>, op: &EOp) -> Result<(u32, Option<u8>), E> {
    match *op {
        EOp::Export(obj) => t.export(obj).map(|id| (id, None)),
        EOp::Release(id, n) => t.release(id, n).map(|o| (id, o)),
    }
}

#[derive(Clone, Debug)]
enum IOp {
    Receive(u32),
    Drop(u32),
}

fn i_op() -> impl Strategy<Value = IOp> {
    prop_oneof![
        3 => (0u32..6).prop_map(IOp::Receive),
        2 => (0u32..6).prop_map(IOp::Drop),
    ]
}

fn i_model(m: &mut Vec<(u32, u32)>, op: &IOp) -> Result<Option<Release>, E> {
    match *op {
        IOp::Receive(id) => {
            match m.iter_mut().find(|e| e.0 == id) {
                Some(e) => e.1 += 1,
                None => m.push((id, 1)),
            }
            Ok(None)
        }
        IOp::Drop(id) => {
            let i = m
                .iter()
                .position(|e| e.0 == id)
                .ok_or(E::DropOfUnknownImport { id })?;
            let (id, reference_count) = m.remove(i);
            Ok(Some(Release {
                id,
                reference_count,
            }))
        }
    }
}

fn i_real(t: &mut Imports, op: &IOp) -> Result<Option<Release>, E> {
    match *op {
        IOp::Receive(id) => t.on_received(id).map(|_| None),
        IOp::Drop(id) => t.drop_import(id).map(Some),
    }
}

// ---------------------------------------------------------------------------------------------
// Two-sided runs: one scheduler step picks an action of either side or a delivery.

#[derive(Clone, Debug)]
enum Step {
    /// Asker sends a new question / exporter sends a capability (object `n % 4`).
    Send(u8),
    /// Asker finishes / importer drops the `n`-th eligible entry.
    Close(u8),
    /// Answerer returns the `n`-th unreturned answer (with noFinishNeeded if the bool is set).
    Reply(u8, bool),
    /// Deliver the head of the forward queue.
    DeliverForward,
    /// Deliver the head of the backward queue.
    DeliverBackward,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<u8>().prop_map(Step::Send),
        2 => any::<u8>().prop_map(Step::Close),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(n, b)| Step::Reply(n, b)),
        3 => Just(Step::DeliverForward),
        3 => Just(Step::DeliverBackward),
    ]
}

fn nth<T: Copy>(items: &[T], n: u8) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[n as usize % items.len()])
    }
}

#[derive(Clone, Copy, Debug)]
enum QMsg {
    Call(u32),
    Finish(u32),
}

/// Asker and answerer over FIFO queues. Legal behaviour must never raise a protocol error, a
/// question ID must never be handed out again before its Return arrived and its Finish was
/// sent, and at the end both tables drain to empty.
fn run_questions(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut asker = Questions::new();
    let mut answerer = Answers::new();
    let mut fwd: VecDeque<QMsg> = VecDeque::new();
    let mut back: VecDeque<(u32, bool)> = VecDeque::new(); // Return(id, noFinishNeeded)
    // The asker's own record of IDs not yet free: (returned, finish_sent or no finish needed).
    let mut outstanding: Vec<(u32, bool, bool)> = Vec::new();

    let deliver_fwd = |answerer: &mut Answers, fwd: &mut VecDeque<QMsg>| -> Result<(), E> {
        match fwd.pop_front() {
            Some(QMsg::Call(id)) => answerer.on_question(id),
            Some(QMsg::Finish(id)) => answerer.on_finish(id).map(|_| ()),
            None => Ok(()),
        }
    };
    let deliver_back = |asker: &mut Questions,
                        back: &mut VecDeque<(u32, bool)>,
                        outstanding: &mut Vec<(u32, bool, bool)>|
     -> Result<(), E> {
        if let Some((id, nfn)) = back.pop_front() {
            asker.on_return(id, nfn)?;
            let e = outstanding.iter_mut().find(|e| e.0 == id).unwrap();
            e.1 = true;
            e.2 |= nfn;
            outstanding.retain(|e| !(e.1 && e.2));
        }
        Ok(())
    };

    for s in steps {
        match *s {
            Step::Send(_) => {
                let id = asker.ask().unwrap();
                prop_assert!(
                    !outstanding.iter().any(|e| e.0 == id),
                    "question {} reused before its Return and Finish",
                    id
                );
                outstanding.push((id, false, false));
                fwd.push_back(QMsg::Call(id));
            }
            Step::Close(n) => {
                let open: Vec<u32> = asker
                    .iter()
                    .filter(|(_, q)| !q.finish_sent)
                    .map(|(id, _)| id)
                    .collect();
                if let Some(id) = nth(&open, n) {
                    asker.finish(id).unwrap();
                    outstanding.iter_mut().find(|e| e.0 == id).unwrap().2 = true;
                    outstanding.retain(|e| !(e.1 && e.2));
                    fwd.push_back(QMsg::Finish(id));
                }
            }
            Step::Reply(n, nfn) => {
                let open: Vec<u32> = answerer
                    .iter()
                    .filter(|(_, a)| !a.returned)
                    .map(|(id, _)| id)
                    .collect();
                if let Some(id) = nth(&open, n) {
                    answerer.send_return(id, nfn).unwrap();
                    back.push_back((id, nfn));
                }
            }
            Step::DeliverForward => deliver_fwd(&mut answerer, &mut fwd).unwrap(),
            Step::DeliverBackward => deliver_back(&mut asker, &mut back, &mut outstanding).unwrap(),
        }
    }

    // Quiescence: deliver everything, return every answer, finish every question.
    loop {
        while !fwd.is_empty() {
            deliver_fwd(&mut answerer, &mut fwd).unwrap();
        }
        let unreturned: Vec<u32> = answerer
            .iter()
            .filter(|(_, a)| !a.returned)
            .map(|(id, _)| id)
            .collect();
        for id in unreturned {
            answerer.send_return(id, false).unwrap();
            back.push_back((id, false));
        }
        while !back.is_empty() {
            deliver_back(&mut asker, &mut back, &mut outstanding).unwrap();
        }
        let unfinished: Vec<u32> = asker
            .iter()
            .filter(|(_, q)| !q.finish_sent)
            .map(|(id, _)| id)
            .collect();
        for id in &unfinished {
            asker.finish(*id).unwrap();
            fwd.push_back(QMsg::Finish(*id));
        }
        if fwd.is_empty() && back.is_empty() {
            break;
        }
    }
    prop_assert!(
        asker.is_empty(),
        "questions left: {:?}",
        asker.iter().collect::<Vec<_>>()
    );
    prop_assert!(
        answerer.is_empty(),
        "answers left: {:?}",
        answerer.iter().collect::<Vec<_>>()
    );
    Ok(())
}

/// Exporter and importer over FIFO queues: capabilities go forward, Releases come back. At every
/// step each export's count equals the importer's count plus what is in flight either way; no
/// Release ever over-releases; when the importer drops everything the export table empties.
fn run_refcounts(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut exporter: Exports<u8> = Exports::new();
    let mut importer = Imports::new();
    let mut fwd: VecDeque<u32> = VecDeque::new(); // senderHosted(id)
    let mut back: VecDeque<Release> = VecDeque::new();

    let check = |exporter: &Exports<u8>,
                 importer: &Imports,
                 fwd: &VecDeque<u32>,
                 back: &VecDeque<Release>|
     -> Result<(), TestCaseError> {
        for (id, _, held) in exporter.iter() {
            let in_flight = fwd.iter().filter(|&&f| f == id).count() as u64;
            let releasing: u64 = back
                .iter()
                .filter(|r| r.id == id)
                .map(|r| u64::from(r.reference_count))
                .sum();
            prop_assert_eq!(
                u64::from(held),
                u64::from(importer.count(id)) + in_flight + releasing,
                "export {} count out of balance",
                id
            );
        }
        for (id, _) in importer.iter() {
            prop_assert!(exporter.object(id).is_some(), "import {} has no export", id);
        }
        Ok(())
    };

    for s in steps {
        match *s {
            Step::Send(obj) => fwd.push_back(exporter.export(obj % 4).unwrap()),
            Step::Close(n) | Step::Reply(n, _) => {
                let held: Vec<u32> = importer.iter().map(|(id, _)| id).collect();
                if let Some(id) = nth(&held, n) {
                    back.push_back(importer.drop_import(id).unwrap());
                }
            }
            Step::DeliverForward => {
                if let Some(id) = fwd.pop_front() {
                    importer.on_received(id).unwrap();
                }
            }
            Step::DeliverBackward => {
                if let Some(r) = back.pop_front() {
                    exporter.release(r.id, r.reference_count).unwrap();
                }
            }
        }
        check(&exporter, &importer, &fwd, &back)?;
    }

    while let Some(id) = fwd.pop_front() {
        importer.on_received(id).unwrap();
    }
    let held: Vec<u32> = importer.iter().map(|(id, _)| id).collect();
    for id in held {
        back.push_back(importer.drop_import(id).unwrap());
    }
    while let Some(r) = back.pop_front() {
        exporter.release(r.id, r.reference_count).unwrap();
    }
    prop_assert!(exporter.is_empty());
    prop_assert!(importer.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn questions_match_the_model(ops in proptest::collection::vec(q_op(), 1..80)) {
        let mut real = Questions::new();
        let mut model: QModel = Vec::new();
        for op in &ops {
            prop_assert_eq!(q_real(&mut real, op), q_model(&mut model, op), "after {:?}", op);
            let mut want = model.clone();
            want.sort();
            let got: QModel = real
                .iter()
                .map(|(id, &Question { returned, finish_sent })| (id, returned, finish_sent))
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn answers_match_the_model(ops in proptest::collection::vec(a_op(), 1..80)) {
        let mut real = Answers::new();
        let mut model = AModel::default();
        for op in &ops {
            prop_assert_eq!(a_real(&mut real, op), a_model(&mut model, op), "after {:?}", op);
            let mut want = model.live.clone();
            want.sort();
            let got: Vec<_> = real
                .iter()
                .map(|(id, &Answer { returned, finish_received })| (id, returned, finish_received))
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn exports_match_the_model(ops in proptest::collection::vec(e_op(), 1..80)) {
        let mut real: Exports<u8> = Exports::new();
        let mut model: EModel = Vec::new();
        for op in &ops {
            prop_assert_eq!(e_real(&mut real, op), e_model(&mut model, op), "after {:?}", op);
            let mut want = model.clone();
            want.sort();
            let got: EModel = real.iter().map(|(id, &o, n)| (id, o, n)).collect();
            prop_assert_eq!(got, want);
            for &(id, obj, _) in &model {
                prop_assert_eq!(real.find(&obj), Some(id));
            }
        }
    }

    #[test]
    fn imports_match_the_model(ops in proptest::collection::vec(i_op(), 1..80)) {
        let mut real = Imports::new();
        let mut model: Vec<(u32, u32)> = Vec::new();
        for op in &ops {
            prop_assert_eq!(i_real(&mut real, op), i_model(&mut model, op), "after {:?}", op);
            let mut want = model.clone();
            want.sort();
            prop_assert_eq!(real.iter().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn question_ids_are_reused_only_after_return_and_finish(
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        run_questions(&steps)?;
    }

    #[test]
    fn release_counts_balance_the_export_counts(
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        run_refcounts(&steps)?;
    }
}

#[test]
fn ids_are_actually_reused_in_a_long_run() {
    // Guards the two-sided test against passing vacuously: with lowest-free allocation, a
    // long call/return/finish cycle keeps using ID 0.
    let mut asker = Questions::new();
    let mut answerer = Answers::new();
    for _ in 0..100 {
        let id = asker.ask().unwrap();
        assert_eq!(id, 0);
        answerer.on_question(id).unwrap();
        answerer.send_return(id, false).unwrap();
        asker.on_return(id, false).unwrap();
        asker.finish(id).unwrap();
        answerer.on_finish(id).unwrap();
    }
}
