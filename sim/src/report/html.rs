//! The picture of a run as one self-contained HTML page: no network fetch at view time (styles,
//! script and the SVG are inline). At the top the run's options, verdict, violations and the
//! commands that reproduce it; then one lane per actor with its events on a virtual-time axis,
//! arrows for what links them (messages, doorbells, interrupts, sibling calls, RPC deliveries,
//! wake-ups) and each violation marked where it was first visible; then the whole trace,
//! searchable and filterable by actor and event kind.

use super::layout::{self, Layout};
use crate::replay_file::{ReplayFile, shell_word};
use harness::RunReport;
use std::fmt::Write as _;
use std::path::Path;

/// Trace lines drawn at most (the table below always holds every line).
pub const MAX_DRAWN: usize = 3000;

const LANE_H: f64 = 26.0;
const TOP: f64 = 34.0;
const LABEL_W: f64 = 150.0;
/// Where the first event sits in the scrolling picture.
const X0: f64 = 10.0;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The class of an event's glyph, by its kind.
fn event_class(kind: &str) -> &'static str {
    match kind {
        "load" | "read" | "cas" | "rmw" => "ev-load",
        "store" | "write" | "drain" | "fence" => "ev-store",
        "park" | "halt" | "lock" => "ev-park",
        "wake" | "resume" | "unlock" => "ev-wake",
        "irq" | "ring" | "deliver" | "notify" => "ev-signal",
        "send" | "recv" | "call" | "enter" | "return" | "answered" => "ev-message",
        "panic" | "call-failed" => "ev-bad",
        _ => "ev-other",
    }
}

/// The commands that reproduce the run.
fn commands(report: &RunReport, replay: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = replay {
        out.push(ReplayFile::replay_command(p));
    }
    if let simkit::DecisionMode::Seeded(seed) = report.source {
        let mut c = format!(
            "sim --seed {seed} --scenario {} --strategy {} --mem {}",
            shell_word(report.scenario),
            report.strategy.name(),
            report.mem.name()
        );
        if let Some((_, d)) = report.options.iter().find(|(k, _)| k == "pct_depth") {
            let _ = write!(c, " --pct-depth {d}");
        }
        if let Some(p) = report.plant {
            let _ = write!(c, " --plant {p}");
        }
        out.push(c + " --trace");
    }
    out
}

/// The lane labels, in an SVG of their own that stays put while the picture scrolls.
fn labels(l: &Layout<'_>) -> String {
    let height = TOP + LANE_H * l.lanes.len() as f64 + 20.0;
    let mut s = format!(
        r#"<svg id="labels" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W}" height="{height:.0}">"#
    );
    for (i, lane) in l.lanes.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text class="lane-label" x="6" y="{:.1}">{}</text>"#,
            TOP + LANE_H * i as f64 + LANE_H / 2.0 + 4.0,
            esc(lane)
        );
    }
    s.push_str("</svg>");
    s
}

fn svg(l: &Layout<'_>, report: &RunReport) -> String {
    let height = TOP + LANE_H * l.lanes.len() as f64 + 20.0;
    let width = X0 + l.width;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="lanes" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">"#
    );
    s.push_str(r#"<defs>"#);
    for class in ["message", "doorbell", "interrupt", "call", "rpc", "wake"] {
        let _ = write!(
            s,
            r#"<marker id="head-{class}" class="head-{class}" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z"/></marker>"#
        );
    }
    s.push_str("</defs>");
    let y = |lane: usize| TOP + LANE_H * lane as f64 + LANE_H / 2.0;
    // Time axis: a tick about every 120 px, labelled with the virtual time there.
    let mut next_tick = 0.0;
    for e in &l.events {
        if e.x >= next_tick {
            let x = X0 + e.x;
            let _ = write!(
                s,
                r#"<g class="tick"><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{height:.0}"/><text x="{x:.1}" y="14">{} ns</text></g>"#,
                TOP - 6.0,
                e.time
            );
            next_tick = e.x + 120.0;
        }
    }
    for (i, lane) in l.lanes.iter().enumerate() {
        let yy = y(i);
        let _ = write!(
            s,
            r#"<g class="lane" data-lane="{0}"><line class="lane-line" x1="0" y1="{yy:.1}" x2="{width:.0}" y2="{yy:.1}"/></g>"#,
            esc(lane),
        );
    }
    for link in &l.links {
        let (a, b) = (&l.events[link.from], &l.events[link.to]);
        let class = link.kind.class();
        let _ = write!(
            s,
            r#"<line class="arrow arrow-{class}" data-key="{}" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" marker-end="url(#head-{class})"><title>{class} {} (line {} to line {})</title></line>"#,
            esc(&link.key),
            X0 + a.x,
            y(a.lane),
            X0 + b.x,
            y(b.lane),
            esc(&link.key),
            a.index + 1,
            b.index + 1
        );
    }
    // What was sent and never arrived: a stub that ends in a cross.
    for (pos, kind, key) in &l.undelivered {
        let e = &l.events[*pos];
        let (x, yy, class) = (X0 + e.x, y(e.lane), kind.class());
        let _ = write!(
            s,
            r#"<g class="undelivered"><line class="arrow arrow-{class} arrow-undelivered" data-key="{k}" x1="{x:.1}" y1="{yy:.1}" x2="{:.1}" y2="{:.1}"><title>{class} {k} sent (line {}) and never received</title></line><text x="{:.1}" y="{:.1}">×</text></g>"#,
            x + 28.0,
            yy + 14.0,
            e.index + 1,
            x + 27.0,
            yy + 19.0,
            k = esc(key),
        );
    }
    for e in &l.events {
        let _ = write!(
            s,
            r#"<circle class="event {}" data-line="{}" cx="{:.1}" cy="{:.1}" r="4"><title>{}: {}</title></circle>"#,
            event_class(e.kind),
            e.index + 1,
            X0 + e.x,
            y(e.lane),
            e.index + 1,
            esc(e.line)
        );
    }
    // Violations, where each was first visible: one mark per trace line, naming them all.
    let mut marks: Vec<(usize, Vec<(usize, &harness::Violation)>)> = Vec::new();
    for (n, v) in report.violations.iter().enumerate() {
        let Some(at) = v.at else { continue };
        let line = at.event as usize;
        match marks.iter_mut().find(|(l, _)| *l == line) {
            Some((_, vs)) => vs.push((n, v)),
            None => marks.push((line, vec![(n, v)])),
        }
    }
    for (m, (line, vs)) in marks.iter().enumerate() {
        let x = match l.events.iter().find(|e| e.index >= *line) {
            Some(e) if *line >= l.window.0 => e.x,
            _ => continue,
        };
        let lane = l.events.iter().find(|e| e.index == *line).map(|e| e.lane);
        let x = X0 + x;
        let ids: Vec<String> = vs.iter().map(|(n, _)| n.to_string()).collect();
        let _ = write!(
            s,
            r#"<g class="violation-mark" data-violation="{}" data-line="{}"><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{height:.0}"/>"#,
            ids.join(" "),
            line + 1,
            TOP - 10.0
        );
        if let Some(lane) = lane {
            let _ = write!(s, r#"<circle cx="{x:.1}" cy="{:.1}" r="8"/>"#, y(lane));
        }
        let mut oracles: Vec<&str> = vs.iter().map(|(_, v)| v.oracle).collect();
        oracles.dedup();
        let label = if vs.len() == 1 {
            oracles.join(", ")
        } else {
            format!("{} violations: {}", vs.len(), oracles.join(", "))
        };
        let titles: Vec<String> = vs.iter().map(|(_, v)| esc(&v.to_string())).collect();
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}">✗ {}</text><title>{}</title></g>"#,
            x + 4.0,
            TOP - 12.0 + 12.0 * (m % 2) as f64,
            esc(&label),
            titles.join("&#10;")
        );
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = r#"
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
header{padding:14px 20px;background:#fff;border-bottom:1px solid #dde2e8}
h1{font-size:18px;margin:0 0 6px}h2{font-size:15px;margin:18px 20px 8px}
.verdict-fail{color:#b3261e}.verdict-pass{color:#1e7b34}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre.cmd{background:#f1f3f6;padding:6px 8px;margin:4px 0;border-radius:4px;overflow-x:auto}
.options{display:flex;flex-wrap:wrap;gap:4px 10px;max-height:90px;overflow:auto}
.options span{background:#eef1f5;padding:1px 6px;border-radius:3px}
ul.violations{margin:6px 0;padding-left:18px}ul.violations li{color:#b3261e}
ul.violations a{color:inherit}
#frame{margin:0 20px;display:flex;background:#fff;border:1px solid #dde2e8;border-radius:6px;max-height:70vh;overflow-y:auto}
#labels{flex:none;border-right:1px solid #eef1f5;background:#fff}
#picture{overflow-x:auto;flex:1}
.lane-line{stroke:#e3e7ec;stroke-width:1}.lane-label{font-size:11px;fill:#39424d;font-family:ui-monospace,monospace}
.tick line{stroke:#f0f2f5}.tick text{font-size:10px;fill:#8a94a0}
.event{stroke:#fff;stroke-width:1;cursor:pointer}
.ev-load{fill:#9aa5b1}.ev-store{fill:#5f6b78}.ev-park{fill:#e8a33d}.ev-wake{fill:#3aa35b}
.ev-signal{fill:#2f6fd6}.ev-message{fill:#8a4fd0}.ev-bad{fill:#d93025}.ev-other{fill:#b8c0c9}
.arrow{stroke-width:1.4;fill:none;opacity:.85}
.arrow-message,.head-message{stroke:#8a4fd0;fill:#8a4fd0}.arrow-rpc,.head-rpc{stroke:#8a4fd0;fill:#8a4fd0}
.arrow-call,.head-call{stroke:#c2185b;fill:#c2185b}.arrow-doorbell,.head-doorbell{stroke:#0b8a8a;fill:#0b8a8a}
.arrow-interrupt,.head-interrupt{stroke:#2f6fd6;fill:#2f6fd6}.arrow-wake,.head-wake{stroke:#3aa35b;fill:#3aa35b;stroke-dasharray:3 2}
.violation-mark line{stroke:#d93025;stroke-width:2;stroke-dasharray:5 3}.violation-mark circle{fill:none;stroke:#d93025;stroke-width:2.5}
.violation-mark text{fill:#d93025;font-weight:600;font-size:11px}
.arrow-undelivered{stroke-dasharray:2 2}.undelivered text{fill:#d93025;font-size:12px}
.legend{margin:6px 20px;color:#56606b;font-size:12px}.legend b{display:inline-block;width:18px;height:3px;vertical-align:middle;margin:0 4px 0 10px}
.filters{margin:0 20px 8px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.filters input,.filters select{font:inherit;padding:3px 6px}
#trace-table{border-collapse:collapse;margin:0 20px 30px;background:#fff;font-family:ui-monospace,monospace;font-size:12px}
#trace-table td{padding:1px 8px;border-bottom:1px solid #f0f2f5;white-space:pre}
#trace-table td.n{color:#8a94a0;text-align:right}#trace-table tr.hit{background:#fff3c4}
#trace-table tr.violated{background:#fde7e6}
"#;

const SCRIPT: &str = r#"
(function(){
  var rows=Array.prototype.slice.call(document.querySelectorAll('#trace-table tbody tr'));
  var q=document.getElementById('search'),a=document.getElementById('actor'),k=document.getElementById('kind');
  var count=document.getElementById('shown');
  function apply(){
    var text=q.value.toLowerCase(),actor=a.value,kind=k.value,n=0;
    rows.forEach(function(r){
      var ok=(!text||r.textContent.toLowerCase().indexOf(text)>=0)&&
        (!actor||r.dataset.actor===actor||r.dataset.actor.indexOf(actor+'/')===0||r.dataset.actor===actor+'.sb')&&
        (!kind||r.dataset.kind===kind);
      r.style.display=ok?'':'none'; if(ok)n++;
    });
    count.textContent=n+' of '+rows.length+' lines';
  }
  [q,a,k].forEach(function(e){e.addEventListener('input',apply);});
  function show(line){
    var r=document.getElementById('L'+line); if(!r)return;
    rows.forEach(function(x){x.classList.remove('hit');});
    r.style.display=''; r.classList.add('hit'); r.scrollIntoView({block:'center'});
  }
  document.querySelectorAll('[data-line]').forEach(function(e){
    e.addEventListener('click',function(){show(e.dataset.line);});
  });
  window.showLine=show; apply();
  // Open the picture where the first violation became visible.
  var mark=document.querySelector('.violation-mark line'),pic=document.getElementById('picture');
  if(mark&&pic){pic.scrollLeft=Math.max(0,parseFloat(mark.getAttribute('x1'))-pic.clientWidth*0.7);}
})();
"#;

/// The page for `report` (a run whose trace was kept), replayable from `file` (at `replay`).
pub fn render(report: &RunReport, file: &ReplayFile, replay: Option<&Path>) -> String {
    let empty = Vec::new();
    let lines = report.trace_lines.as_ref().unwrap_or(&empty);
    let focus = report
        .violations
        .iter()
        .filter_map(|v| v.at)
        .map(|a| a.event as usize)
        .min();
    let l = layout::layout(lines, layout::window(lines.len(), MAX_DRAWN, focus));
    let verdict = if report.passed() { "pass" } else { "fail" };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} {} — {verdict}</title><style>{STYLE}</style></head><body>",
        esc(report.scenario),
        esc(&report.source_label())
    );
    let _ = write!(
        h,
        r#"<header><h1>{} · seed {} · <span class="verdict-{verdict}">{verdict}</span></h1><div class="mono">{}</div>"#,
        esc(report.scenario),
        esc(&report.source_label()),
        esc(&report.verdict_line())
    );
    h.push_str(r#"<div class="options" id="options">"#);
    for (k, v) in &report.options {
        let _ = write!(h, "<span>{}={}</span>", esc(k), esc(v));
    }
    h.push_str("</div>");
    let _ = write!(
        h,
        r#"<div>build: commit <code>{}</code>, <code>{}</code>; {} steps, {} ns of virtual time, {} trace lines</div>"#,
        esc(&file.commit),
        esc(&file.rustc),
        report.steps,
        report.sim_ns,
        lines.len()
    );
    h.push_str("<div>reproduce:</div>");
    for c in commands(report, replay) {
        let _ = write!(h, r#"<pre class="cmd">{}</pre>"#, esc(&c));
    }
    if !report.violations.is_empty() {
        h.push_str(r#"<ul class="violations" id="violations">"#);
        for v in &report.violations {
            match v.at {
                Some(at) => {
                    let _ = write!(
                        h,
                        r##"<li><a href="#L{0}" onclick="showLine({0});return false">{1}</a></li>"##,
                        at.event + 1,
                        esc(&v.to_string())
                    );
                }
                None => {
                    let _ = write!(h, "<li>{}</li>", esc(&v.to_string()));
                }
            }
        }
        h.push_str("</ul>");
    }
    h.push_str("</header>");
    let _ = write!(
        h,
        "<h2>The run, one lane per actor</h2><div class=\"legend\">lines {}–{} of {} (time axis compressed: gaps on a log scale; click an event to find its line)<b style=\"background:#8a4fd0\"></b>message / RPC<b style=\"background:#0b8a8a\"></b>doorbell<b style=\"background:#2f6fd6\"></b>interrupt<b style=\"background:#c2185b\"></b>sibling call<b style=\"background:#3aa35b\"></b>wake-up<b style=\"background:#d93025\"></b>violation first visible</div>",
        l.window.0 + 1,
        l.window.1,
        l.total_lines
    );
    let _ = write!(
        h,
        r#"<div id="frame">{}<div id="picture">{}</div></div>"#,
        labels(&l),
        svg(&l, report)
    );
    // The whole trace, filterable.
    let mut actors: Vec<&str> = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for line in lines {
        if let Some((_, actor, kind)) = layout::parse(line) {
            if !actors.contains(&actor) {
                actors.push(actor);
            }
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    actors.sort_unstable();
    kinds.sort_unstable();
    h.push_str(r#"<h2>The trace</h2><div class="filters"><input id="search" type="search" placeholder="search the trace" size="40"><select id="actor"><option value="">every actor</option>"#);
    for a in &actors {
        let _ = write!(h, "<option>{}</option>", esc(a));
    }
    h.push_str(r#"</select><select id="kind"><option value="">every event</option>"#);
    for k in &kinds {
        let _ = write!(h, "<option>{}</option>", esc(k));
    }
    h.push_str(r#"</select><span id="shown"></span></div><table id="trace-table"><tbody>"#);
    let violated: Vec<u64> = report
        .violations
        .iter()
        .filter_map(|v| v.at.map(|a| a.event))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let (t, actor, kind, rest) = match layout::parse(line) {
            Some((t, a, k)) => {
                let skip = line
                    .splitn(4, ' ')
                    .take(3)
                    .map(|w| w.len() + 1)
                    .sum::<usize>();
                (t.to_string(), a, k, line.get(skip..).unwrap_or(""))
            }
            None => (String::new(), "", "", line.as_str()),
        };
        let class = if violated.contains(&(i as u64)) {
            " class=\"violated\""
        } else {
            ""
        };
        let _ = write!(
            h,
            r#"<tr id="L{n}" data-actor="{a}" data-kind="{k}"{class}><td class="n">{n}</td><td>{t}</td><td>{a}</td><td>{k}</td><td>{r}</td></tr>"#,
            n = i + 1,
            a = esc(actor),
            k = esc(kind),
            r = esc(rest)
        );
    }
    let _ = writeln!(h, "</tbody></table><script>{SCRIPT}</script></body></html>");
    h
}
