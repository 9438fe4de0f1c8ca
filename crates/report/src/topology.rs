//! A picture of a profile's service call graph, as inline SVG.
//!
//! Services sit on concentric rings by the smallest depth any of their APIs
//! ran at (the root services in the middle), ordered around each ring by the
//! mean angle of their callers so edges stay short. Arrows go from caller
//! to callee, thicker for more calls. Calls inside a service are not drawn
//! (they are counted in the service's tooltip). Only the most called
//! services are drawn when there are many.
//!
//! Labels are 12 px; the picture's size and view box grow to take in every
//! label (by an estimate of its width), so none is cut off at an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::{PI, TAU};
use std::fmt::Write;

use crate::collect::Profile;
use crate::plot::text_width;

/// Size of the square the rings are laid out in, px; the picture grows past
/// it to fit the labels.
const SIZE: f64 = 760.0;
/// Room left outside the outer ring for labels.
const MARGIN: f64 = 110.0;
/// Label size, px.
const FONT_PX: f64 = 12.0;
/// Blank border around everything drawn, px.
const PAD: f64 = 8.0;
/// Characters of a label at most (then elided).
const MAX_LABEL: usize = 26;

/// Attributes of a label: a white rim under the glyphs keeps it readable
/// over arrows and rings.
const HALO: &str = r##"stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke""##;

/// A growing bounding box `(min x, min y, max x, max y)`.
struct Bounds(f64, f64, f64, f64);

impl Bounds {
    fn add(&mut self, x0: f64, y0: f64, x1: f64, y1: f64) {
        self.0 = self.0.min(x0);
        self.1 = self.1.min(y0);
        self.2 = self.2.max(x1);
        self.3 = self.3.max(y1);
    }

    /// Takes in a one-line text drawn at `(x, y)` (its baseline) with
    /// `text-anchor` `anchor`.
    fn add_text(&mut self, text: &str, x: f64, y: f64, anchor: &str) {
        let w = text_width(text, FONT_PX);
        let x0 = match anchor {
            "start" => x,
            "end" => x - w,
            _ => x - w / 2.0,
        };
        self.add(x0, y - 0.8 * FONT_PX, x0 + w, y + 0.25 * FONT_PX);
    }
}

/// Escapes text for XML content and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One drawn service.
struct Service {
    /// Label and tooltip.
    name: String,
    /// Executions of its APIs.
    calls: u64,
    /// Calls between its own APIs.
    local_calls: u64,
    /// Its ring (smallest depth of its APIs), shown in the tooltip and
    /// deciding its colour (roots are dark).
    depth: u32,
    /// Centre, px.
    x: f64,
    y: f64,
    /// Radius, px: grows with the log of its executions.
    r: f64,
}

/// Centre of the rings, px.
const CENTER: f64 = SIZE / 2.0;

/// The arrowhead every edge ends with.
const ARROW_DEFS: &str = r##"<defs><marker id="palette-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##;

/// A service as ranked: `(name, executions of its APIs, smallest depth)`.
type Ranked<'p> = (&'p str, u64, u32);

/// Calls per `(caller, callee)` service.
type ServiceEdges<'p> = BTreeMap<(&'p str, &'p str), u64>;

/// The SVG, drawing at most `max_services` services (the most executed).
pub fn topology_svg(profile: &Profile, max_services: usize) -> String {
    let (ranked, total_services) = ranked_services(profile, max_services);
    let kept: BTreeSet<&str> = ranked.iter().map(|r| r.0).collect();
    let (edges, local) = service_calls(profile, &kept);
    let rings = Rings::new(&ranked);
    let (services, index) = place_services(&ranked, &edges, &local, &rings);

    // What is drawn, in a box that grows to take in every node and label.
    let mut bounds = Bounds(f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    let mut svg = String::new();
    svg += ARROW_DEFS;
    svg += "\n";
    draw_rings(&mut svg, &mut bounds, &rings);
    draw_edges(&mut svg, &edges, &services, &index);
    for s in &services {
        draw_service(&mut svg, &mut bounds, s, &rings);
    }
    if !bounds.0.is_finite() {
        bounds.add(CENTER, CENTER, CENTER, CENTER);
    }
    if total_services > services.len() {
        // A note below everything, at the left.
        let note = format!("the {} most executed of {} services", services.len(), total_services);
        let (x, y) = (bounds.0, bounds.3 + 6.0 + FONT_PX);
        bounds.add_text(&note, x, y, "start");
        let _ = writeln!(svg, r##"<text x="{x:.1}" y="{y:.1}" fill="#666">{note}</text>"##);
    }
    let (x0, y0) = ((bounds.0 - PAD).floor(), (bounds.1 - PAD).floor());
    let (w, h) = ((bounds.2 + PAD).ceil() - x0, (bounds.3 + PAD).ceil() - y0);
    let header = format!(
        r#"<svg class="topology" width="{w}" height="{h}" viewBox="{x0} {y0} {w} {h}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="{FONT_PX}">"#
    );
    header + &svg + "</svg>\n"
}

/// The services with their executions and depth, most executed first (by
/// name on ties), cut to the `max_services` drawn; and how many there are.
fn ranked_services(profile: &Profile, max_services: usize) -> (Vec<Ranked<'_>>, usize) {
    let mut by_name: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    for (api, a) in &profile.apis {
        let e = by_name.entry(api.service.as_str()).or_insert((0, u32::MAX));
        e.0 += a.latency.count;
        e.1 = e.1.min(a.min_depth);
    }
    let total_services = by_name.len();
    let mut ranked: Vec<Ranked> = by_name.into_iter().map(|(n, (c, d))| (n, c, d)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked.truncate(max_services.max(1));
    (ranked, total_services)
}

/// Calls between the `kept` services, and calls inside each service (the
/// tooltip counts them; they are not drawn).
fn service_calls<'p>(profile: &'p Profile, kept: &BTreeSet<&str>) -> (ServiceEdges<'p>, BTreeMap<&'p str, u64>) {
    let mut edges: ServiceEdges = BTreeMap::new();
    let mut local: BTreeMap<&str, u64> = BTreeMap::new();
    for ((caller, callee), s) in &profile.callers {
        let (a, b) = (caller.service.as_str(), callee.service.as_str());
        if a == b {
            *local.entry(a).or_default() += s.count;
        } else if kept.contains(a) && kept.contains(b) {
            *edges.entry((a, b)).or_default() += s.count;
        }
    }
    (edges, local)
}

/// The rings: one per distinct depth, in order; the first is the centre
/// point when it holds a single service.
struct Rings {
    depths: Vec<u32>,
    centered: bool,
    /// Distance between rings, px.
    step: f64,
}

impl Rings {
    fn new(ranked: &[Ranked]) -> Rings {
        let depths: Vec<u32> = ranked.iter().map(|r| r.2).collect::<BTreeSet<_>>().into_iter().collect();
        let first_ring_count = ranked.iter().filter(|r| Some(&r.2) == depths.first()).count();
        let centered = first_ring_count == 1;
        let rings = depths.len() - usize::from(centered);
        let step = if rings == 0 { 0.0 } else { (CENTER - MARGIN) / rings as f64 };
        Rings { depths, centered, step }
    }

    /// Radius of ring `ring`, px.
    fn radius(&self, ring: usize) -> f64 {
        if self.centered { self.step * ring as f64 } else { self.step * (ring + 1) as f64 }
    }
}

/// Places the services ring by ring, each ring's in the order of their
/// callers' direction (so edges stay short); returns them with the index
/// of each by name.
fn place_services<'p>(
    ranked: &[Ranked<'p>],
    edges: &ServiceEdges,
    local: &BTreeMap<&str, u64>,
    rings: &Rings,
) -> (Vec<Service>, BTreeMap<&'p str, usize>) {
    let max_calls = ranked.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let mut services: Vec<Service> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (ring, &depth) in rings.depths.iter().enumerate() {
        let mut members: Vec<(&str, u64, f64)> = ranked
            .iter()
            .filter(|r| r.2 == depth)
            .map(|&(name, calls, _)| (name, calls, callers_direction(name, edges, &index, &services)))
            .collect();
        members.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(b.0)));
        let radius = rings.radius(ring);
        let n = members.len();
        // The first ring starts half a step past the top, so two roots sit
        // left and right and what they both call can go on top.
        let unplaced = if ring == 0 && n > 1 { -PI / 2.0 + PI / n as f64 } else { -PI / 2.0 };
        let start = members.first().map(|m| m.2).filter(|a| a.is_finite()).unwrap_or(unplaced);
        for (k, &(name, calls, _)) in members.iter().enumerate() {
            let angle = start + TAU * k as f64 / n as f64;
            let r = 5.0 + 9.0 * ((calls as f64).ln_1p() / max_calls.ln_1p()).clamp(0.0, 1.0);
            index.insert(name, services.len());
            services.push(Service {
                name: name.to_string(),
                calls,
                local_calls: local.get(name).copied().unwrap_or(0),
                depth,
                x: CENTER + radius * angle.cos(),
                y: CENTER + radius * angle.sin(),
                r,
            });
        }
    }
    (services, index)
}

/// The mean direction (angle) of `name`'s callers placed so far, weighted
/// by calls; infinite, to place it after the others (at the top when it is
/// alone), when it has none or they pull in opposite directions.
fn callers_direction(name: &str, edges: &ServiceEdges, index: &BTreeMap<&str, usize>, services: &[Service]) -> f64 {
    // A circular mean: the sum of unit vectors towards each caller.
    let (mut sx, mut sy, mut w) = (0.0, 0.0, 0.0);
    for (&(a, b), &n) in edges {
        if b == name
            && let Some(&i) = index.get(a)
        {
            let s = &services[i];
            let (dx, dy) = (s.x - CENTER, s.y - CENTER);
            let len = (dx * dx + dy * dy).sqrt();
            if len > 0.0 {
                sx += dx / len * n as f64;
                sy += dy / len * n as f64;
                w += n as f64;
            }
        }
    }
    let strong = w > 0.0 && (sx * sx + sy * sy).sqrt() / w >= 0.25;
    if strong { sy.atan2(sx) } else { f64::INFINITY }
}

/// The dashed circles of the rings (none for a centre point).
fn draw_rings(svg: &mut String, bounds: &mut Bounds, rings: &Rings) {
    for ring in 0..rings.depths.len() {
        let radius = rings.radius(ring);
        if radius > 0.0 {
            bounds.add(CENTER - radius, CENTER - radius, CENTER + radius, CENTER + radius);
            let _ = writeln!(
                svg,
                r##"<circle cx="{CENTER}" cy="{CENTER}" r="{radius:.1}" fill="none" stroke="#e4e4e4" stroke-dasharray="3 4"/>"##
            );
        }
    }
}

/// An arrow per edge from the caller's node to the callee's, thicker for
/// more calls; none between nodes that touch.
fn draw_edges(svg: &mut String, edges: &ServiceEdges, services: &[Service], index: &BTreeMap<&str, usize>) {
    let max_edge = edges.values().copied().max().unwrap_or(1).max(1) as f64;
    for (&(a, b), &n) in edges {
        let (s, t) = (&services[index[a]], &services[index[b]]);
        let (dx, dy) = (t.x - s.x, t.y - s.y);
        let len = (dx * dx + dy * dy).sqrt();
        if len < s.r + t.r + 2.0 {
            continue;
        }
        let (ux, uy) = (dx / len, dy / len);
        let (x1, y1) = (s.x + ux * (s.r + 1.0), s.y + uy * (s.r + 1.0));
        let (x2, y2) = (t.x - ux * (t.r + 2.0), t.y - uy * (t.r + 2.0));
        let width = 0.8 + 2.4 * ((n as f64).ln_1p() / max_edge.ln_1p());
        let _ = writeln!(
            svg,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#555" stroke-opacity="0.55" stroke-width="{width:.2}" marker-end="url(#palette-arrow)"><title>{} → {}: {n} calls</title></line>"##,
            xml_escape(a),
            xml_escape(b)
        );
    }
}

/// A service's node (dark for a root service), its label and its tooltip.
fn draw_service(svg: &mut String, bounds: &mut Bounds, s: &Service, rings: &Rings) {
    bounds.add(s.x - s.r - 1.0, s.y - s.r - 1.0, s.x + s.r + 1.0, s.y + s.r + 1.0);
    let (lx, ly, anchor) = label_place(s);
    let label: String = if s.name.chars().count() > MAX_LABEL {
        s.name.chars().take(MAX_LABEL - 1).chain(std::iter::once('…')).collect()
    } else {
        s.name.clone()
    };
    bounds.add_text(&label, lx, ly, anchor);
    let fill = if s.depth == rings.depths[0] { "#222" } else { "#6a8caf" };
    let _ = writeln!(
        svg,
        r##"<g><title>{name}: {calls} executions, depth {depth}, {local} local calls</title><circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{fill}" stroke="#fff"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="{anchor}" {HALO}>{label}</text></g>"##,
        name = xml_escape(&s.name),
        calls = s.calls,
        depth = s.depth,
        local = s.local_calls,
        x = s.x,
        y = s.y,
        r = s.r,
        label = xml_escape(&label),
    );
}

/// Where a service's label goes, `(x, y, text-anchor)`: pointing outward,
/// or below the node at the centre.
fn label_place(s: &Service) -> (f64, f64, &'static str) {
    let (dx, dy) = (s.x - CENTER, s.y - CENTER);
    let len = (dx * dx + dy * dy).sqrt();
    if len < 1.0 {
        return (s.x, s.y + s.r + 14.0, "middle");
    }
    let (ux, uy) = (dx / len, dy / len);
    let anchor = if ux > 0.3 {
        "start"
    } else if ux < -0.3 {
        "end"
    } else {
        "middle"
    };
    (s.x + ux * (s.r + 5.0), s.y + uy * (s.r + 5.0) + 4.5 + uy * 4.5, anchor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tests::one_trace_profile;
    use palette_trace::tree::NO_PARENT;

    #[test]
    fn draws_services_and_arrows() {
        let calls = [("front/GET <x>", NO_PARENT, 0, 100), ("b/b", 0, 1, 20), ("c/c", 0, 30, 40), ("b/b2", 1, 2, 10)];
        let profile = one_trace_profile(&calls);
        let svg = topology_svg(&profile, 60);
        assert_eq!(svg.matches("<circle cx").count() - svg.matches("fill=\"none\"").count(), 3);
        assert_eq!(svg.matches("<line").count(), 2, "{svg}");
        assert!(svg.contains(">front<") && svg.contains("1 local calls"));
        assert!(!svg.contains("NaN"));
        let capped = topology_svg(&profile, 2);
        assert!(capped.contains("the 2 most executed of 3 services"));
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    /// The value of attribute `name` in `tag`.
    fn attr(tag: &str, name: &str) -> f64 {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..start + tag[start..].find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn labels_are_readable_and_inside() {
        let profile = one_trace_profile(&[
            ("frontend-with-a-long-name/GET", NO_PARENT, 0, 100),
            ("reservation-service-east/check", 0, 1, 20),
            ("recommendation-engine-v2-experimental/get", 0, 30, 40),
            ("geo/near", 1, 2, 10),
            ("profile-cache-memcached-shard-1/get", 2, 31, 35),
            ("rate-limiter-west/allow", 0, 41, 50),
        ]);
        let svg = topology_svg(&profile, 4);
        assert!(svg.contains("the 4 most executed of 6 services"));
        let head = &svg[..svg.find('>').unwrap()];
        // Every text is at least 12 px (they inherit the root's size).
        assert!(attr(head, "font-size") >= 12.0);
        assert!(svg.match_indices("font-size=\"").all(|(i, _)| attr(&svg[i - 1..], "font-size") >= 12.0));
        let view: Vec<f64> = {
            let start = head.find("viewBox=\"").unwrap() + 9;
            head[start..start + head[start..].find('"').unwrap()].split(' ').map(|v| v.parse().unwrap()).collect()
        };
        assert_eq!((view[2], view[3]), (attr(head, "width"), attr(head, "height")));
        // Every label's estimated box is inside the view box.
        for (i, _) in svg.match_indices("<text") {
            let tag = &svg[i..i + svg[i..].find('>').unwrap()];
            let body = &svg[i + tag.len() + 1..i + svg[i..].find("</text>").unwrap()];
            let (x, y, w) = (attr(tag, "x"), attr(tag, "y"), text_width(body, FONT_PX));
            let x0 = if tag.contains("\"end\"") {
                x - w
            } else if tag.contains("\"middle\"") {
                x - w / 2.0
            } else {
                x
            };
            assert!(x0 >= view[0] && x0 + w <= view[0] + view[2], "{body} at x {x0}..{} in {view:?}", x0 + w);
            assert!(y - FONT_PX >= view[1] && y + 4.0 <= view[1] + view[3], "{body} at y {y} in {view:?}");
        }
    }
}
