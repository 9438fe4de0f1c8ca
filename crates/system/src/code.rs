//! `palette generate --code rust`: each service as Rust a person can edit.
//!
//! The paper's specification stage turns every API's PFA into local
//! functions; this module writes them as a Cargo project under `code/`:
//! one module per service, one `async fn` per API, and per PFA state one
//! function that makes the state's calls (`cx.calls(&[…])`, concurrent,
//! waited; `cx.calls_detached` where the traces did not wait) and then
//! leaves by a `match` on the transition `cx.transition(state)` draws,
//! adding that transition's sampled work with `cx.work(work)`. The API's
//! function loops over its states. The binary hands the table of functions
//! to `palette_runtime::program::main` and is then a drop-in for `palette
//! serve` (same `system.json`, arguments, ports, spans); the causal target
//! and the live top-up of work stay in `palette-runtime`.
//!
//! One crate with a module per service, not a crate per service: the
//! dependencies (Tokio, hyper, h2, prost) are compiled once, and a
//! 20-service system builds as fast as a 2-service one.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use palette_model::{ApiId, Model, ModelKind};

use crate::generate::GeneratedFile;

/// Where the generated project finds Palette's runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeOptions {
    /// The `palette-runtime` crate the project depends on by path.
    pub runtime_path: PathBuf,
    /// The checkout's `Cargo.lock`, copied so the project builds with the
    /// same dependency versions.
    pub lock: Option<String>,
}

/// Why code cannot be generated for a model.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("code is generated from a palette model; this one is `{0}` (fit without --naive)")]
    NotPalette(String),
}

/// Rust's keywords (2024 edition, strict and reserved): never an identifier.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
    "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract",
    "become", "box", "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// `GET /product/{id}` → `get_product_id`; `GetCart` → `get_cart`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_end_matches('_').to_string();
    match out.chars().next() {
        None => "unnamed".into(),
        Some(c) if c.is_ascii_digit() => format!("n{out}"),
        _ => out,
    }
}

/// Hands out identifiers, unique among those it has given (`name`,
/// `name_2`, …) and never a keyword or a reserved name.
struct Names {
    taken: HashSet<String>,
}

impl Names {
    fn new(reserved: &[&str]) -> Names {
        Names { taken: reserved.iter().map(|s| s.to_string()).collect() }
    }

    fn unique(&mut self, base: String) -> String {
        let base = if KEYWORDS.contains(&base.as_str()) { format!("{base}_") } else { base };
        let mut name = base.clone();
        let mut n = 1;
        while !self.taken.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }
}

/// Every identifier the project uses for a service and an API.
struct Idents {
    /// Per service (by name): its module.
    modules: BTreeMap<String, String>,
    /// Per API: its function in its service's module.
    functions: Vec<String>,
    /// Per API: its `api::` constant.
    constants: Vec<String>,
}

fn idents(model: &Model) -> Idents {
    let mut modules = BTreeMap::new();
    let mut module_names = Names::new(&["api", "main", "palette_runtime", "std", "core"]);
    let mut services: Vec<&str> = model.apis.iter().map(|a| a.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    for s in services {
        modules.insert(s.to_string(), module_names.unique(snake_case(s)));
    }
    let mut per_module: BTreeMap<&str, Names> = BTreeMap::new();
    let mut constant_names = Names::new(&[]);
    let mut functions = Vec::with_capacity(model.apis.len());
    let mut constants = Vec::with_capacity(model.apis.len());
    for a in &model.apis {
        let module = modules[&a.service].as_str();
        let names = per_module.entry(module).or_insert_with(|| Names::new(&["api", "cx"]));
        let f = names.unique(snake_case(&a.operation));
        constants.push(constant_names.unique(format!("{module}_{f}").trim_end_matches('_').to_uppercase()));
        functions.push(f);
    }
    Idents { modules, functions, constants }
}

/// A Rust string literal of `s`.
fn literal(s: &str) -> String {
    format!("{s:?}")
}

/// A comment's text: one line, nothing that ends it.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Whether rustfmt might lay out `source`, a file [`render`] wrote, other
/// than it is. The generator writes rustfmt's layout itself except where
/// rustfmt breaks lines by width (a line past 100 columns, a call chain
/// such as `cx.calls(&[…]).await?` past rustfmt's chain width): only such
/// files need rustfmt, which keeps formatting a 1,000-service project to
/// the few files that have them.
pub fn may_need_rustfmt(source: &str) -> bool {
    source.lines().any(|line| {
        let code = line.trim_start();
        !code.starts_with("//") && (line.len() > 100 || (code.contains(".await") && code.len() > 50))
    })
}

/// The files of `code/`, in a fixed order.
pub fn render(model: &Model, system_name: &str, opts: &CodeOptions) -> Result<Vec<GeneratedFile>, CodeError> {
    if model.kind != ModelKind::Palette {
        return Err(CodeError::NotPalette(format!("{:?}", model.kind).to_lowercase()));
    }
    let ids = idents(model);
    let crate_name = format!("{system_name}-services");
    let mut files = vec![
        GeneratedFile { path: "code/Cargo.toml".into(), content: cargo_toml(&crate_name, opts) },
        GeneratedFile { path: "code/.gitignore".into(), content: "/target/\n".into() },
    ];
    if let Some(lock) = &opts.lock {
        files.push(GeneratedFile { path: "code/Cargo.lock".into(), content: lock.clone() });
    }
    files.push(GeneratedFile { path: "code/README.md".into(), content: readme(system_name, &crate_name) });
    files.push(GeneratedFile { path: "code/src/main.rs".into(), content: main_rs(model, system_name, &ids) });
    files.push(GeneratedFile { path: "code/src/api.rs".into(), content: api_rs(model, &ids) });
    for (service, module) in &ids.modules {
        files.push(GeneratedFile { path: format!("code/src/{module}.rs"), content: service_rs(model, service, &ids) });
    }
    Ok(files)
}

fn cargo_toml(crate_name: &str, opts: &CodeOptions) -> String {
    let runtime = opts.runtime_path.display().to_string();
    format!(
        "# The services of a Palette system as Rust (generated by `palette generate --code rust`).\n\
         [package]\n\
         name = {}\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         rust-version = \"1.95\"\n\
         publish = false\n\n\
         [dependencies]\n\
         # The checkout that generated this project (`--runtime-path` to change it).\n\
         palette-runtime = {{ path = {} }}\n\n\
         [profile.release]\n\
         debug = false\n\
         # An edit of one service recompiles what it touched, not every service.\n\
         incremental = true\n\n\
         # Optimised even in debug builds: an unoptimised runtime adds latency of\n\
         # its own to every hop, and the services would no longer be the model's.\n\
         [profile.dev.package.\"*\"]\n\
         opt-level = 1\n\n\
         [profile.dev.package.palette-runtime]\n\
         opt-level = 2\n\n\
         # A workspace of its own, wherever it is put.\n\
         [workspace]\n",
        literal(crate_name),
        literal(&runtime),
    )
}

fn readme(system: &str, crate_name: &str) -> String {
    format!(
        "# {system} as code\n\n\
         Each service of the system is a module of `src/`; each API an `async fn` in it whose body is the \
         API's PFA: a function per state that makes the state's calls (`cx.calls`, concurrent) and leaves by \
         a `match` on the transition `cx.transition` draws, adding its sampled work (`cx.work`). \
         `palette-runtime` keeps the causal target: work is spent just before the next calls and at the \
         end, topped up so each execution takes its sampled time.\n\n\
         ```sh\n\
         cargo build --release\n\
         palette up .. --serve-with target/release/{crate_name}   # or: target/release/{crate_name} serve ../system.json --all\n\
         palette load ..\n\
         ```\n\n\
         To give an API a real implementation, replace its `cx.work(work)` with the real code (its time is \
         then the API's work) or add calls of your own; the other APIs keep the model's behaviour. The \
         binary refuses a `system.json` whose model has other APIs than the ones it was generated from.\n"
    )
}

fn main_rs(model: &Model, system: &str, ids: &Idents) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "//! The services of the Palette system `{}`, as code.", comment(system));
    s.push_str(
        "//!\n//! Generated by `palette generate --code rust`; edit freely. The binary takes the\n\
         //! arguments of `palette serve` (run it with `--help`).\n\n",
    );
    s.push_str("mod api;\n");
    for module in ids.modules.values() {
        let _ = writeln!(s, "mod {module};");
    }
    s.push_str(
        "\nfn main() -> std::process::ExitCode {\n    palette_runtime::program::main(palette_runtime::programs![\n",
    );
    for (i, a) in model.apis.iter().enumerate() {
        let _ = writeln!(
            s,
            "        (api::{}, {}) => {}::{},",
            ids.constants[i],
            literal(&model.api_name(i as ApiId)),
            ids.modules[&a.service],
            ids.functions[i]
        );
    }
    s.push_str("    ])\n}\n");
    s
}

fn api_rs(model: &Model, ids: &Idents) -> String {
    let mut s = String::from(
        "//! Every API of the system, by its id in the model (`palette show` lists them).\n\n\
         use palette_runtime::program::ApiId;\n\n",
    );
    for (i, _) in model.apis.iter().enumerate() {
        let _ = writeln!(s, "/// `{}`.", comment(&model.api_name(i as ApiId)));
        let _ = writeln!(s, "pub const {}: ApiId = {i};", ids.constants[i]);
    }
    s
}

fn service_rs(model: &Model, service: &str, ids: &Idents) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "//! Service `{}`.\n", comment(service));
    let apis: Vec<usize> = (0..model.apis.len()).filter(|&i| model.apis[i].service == service).collect();
    let calls_any = apis.iter().any(|&i| model.apis[i].states.iter().any(|st| !st.calls.is_empty()));
    if calls_any {
        s.push_str("use crate::api;\n");
    }
    s.push_str("use palette_runtime::program::{Cx, Stop};\n");
    for &i in &apis {
        s.push('\n');
        api_fn(&mut s, model, i, ids);
    }
    s
}

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

fn api_fn(s: &mut String, model: &Model, i: usize, ids: &Idents) {
    let a = &model.apis[i];
    let f = &ids.functions[i];
    let name = comment(&model.api_name(i as ApiId));
    if a.states.is_empty() {
        let _ = writeln!(s, "/// `{name}`: a leaf, no calls; its work is its latency in the traces.");
        let _ = writeln!(s, "pub async fn {f}(cx: &mut Cx<'_>) -> Result<(), Stop> {{");
        s.push_str("    let work = cx.leaf_work();\n    cx.work(work);\n    Ok(())\n}\n");
        return;
    }
    let _ = writeln!(
        s,
        "/// `{name}`: {} PFA state{}, from state 0 until a transition ends the execution.",
        a.states.len(),
        if a.states.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "pub async fn {f}(cx: &mut Cx<'_>) -> Result<(), Stop> {{");
    s.push_str("    let mut state = Some(0);\n    while let Some(at) = state {\n        state = match at {\n");
    for k in 0..a.states.len() {
        let _ = writeln!(s, "            {k} => {f}_s{k}(cx).await?,");
    }
    s.push_str("            _ => None,\n        };\n    }\n    Ok(())\n}\n");
    for (k, st) in a.states.iter().enumerate() {
        s.push('\n');
        let callees: Vec<String> = st.calls.iter().map(|&c| format!("`{}`", comment(&model.api_name(c)))).collect();
        let doc = if st.calls.is_empty() {
            format!("State {k}: no calls.")
        } else if st.lambda >= 0.5 && callees.len() == 1 {
            format!("State {k}: calls {} and waits for it.", callees[0])
        } else if st.lambda >= 0.5 {
            format!("State {k}: calls {} concurrently and waits for them all.", callees.join(", "))
        } else {
            format!("State {k}: starts {} and goes on without waiting.", callees.join(", "))
        };
        let _ = writeln!(s, "/// {doc}");
        if !st.repeats.is_empty() {
            let most = st.repeats.iter().map(|&(n, _)| n).max().unwrap_or(1);
            let _ =
                writeln!(s, "/// A counted loop: visited up to {most} times in a row (the runtime draws how many).");
        }
        let _ = writeln!(s, "async fn {f}_s{k}(cx: &mut Cx<'_>) -> Result<Option<u32>, Stop> {{");
        if !st.calls.is_empty() {
            let list: Vec<String> = st.calls.iter().map(|&c| format!("api::{}", ids.constants[c as usize])).collect();
            let call = if st.lambda >= 0.5 { "calls" } else { "calls_detached" };
            let _ = writeln!(s, "    cx.{call}(&[{}]).await?;", list.join(", "));
        }
        let _ = writeln!(s, "    Ok(match cx.transition({k}) {{");
        for (t, tr) in st.next.iter().enumerate() {
            let (to, what) = match tr.to {
                Some(n) if n as usize == k => (format!("Some({n})"), "again".to_string()),
                Some(n) => (format!("Some({n})"), format!("to state {n}")),
                None => ("None".to_string(), "the end".to_string()),
            };
            let _ = writeln!(s, "        // {what}, {} of the time", percent(tr.p));
            let _ = writeln!(
                s,
                "        Some(({t}, work)) => {{\n            cx.work(work);\n            {to}\n        }}"
            );
        }
        s.push_str("        _ => None,\n    })\n}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_distinct_rust_identifiers() {
        assert_eq!(snake_case("GET /product/{id}"), "get_product_id");
        assert_eq!(snake_case("GetCart"), "get_cart");
        assert_eq!(snake_case("hipstershop.CartService/GetCart"), "hipstershop_cart_service_get_cart");
        assert_eq!(snake_case("3ds-verify"), "n3ds_verify");
        assert_eq!(snake_case("ünïcode"), "n_code");
        assert_eq!(snake_case("///"), "unnamed");
        let mut names = Names::new(&["api"]);
        assert_eq!(names.unique("api".into()), "api_2");
        assert_eq!(names.unique("type".into()), "type_");
        assert_eq!(names.unique("get".into()), "get");
        assert_eq!(names.unique("get".into()), "get_2");
    }
}
