//! The API server's static cost estimate of CRD validation rules, for the CEL
//! privnet's rules use: a kube-apiserver refuses a CRD when one rule's
//! estimated cost exceeds [`RULE_LIMIT`] or all rules together (each times
//! how often it may run) exceed [`CRD_LIMIT`].
//!
//! Followed from the Kubernetes sources (read, not copied): cel-go
//! `checker/cost.go` (per-node costs, size estimates), apiserver
//! `pkg/cel/library/cost.go` (`split`, `substring`, `indexOf`), apiextensions
//! `schema/cel` and `apis/apiextensions/validation` (string and list sizes
//! from `maxLength`/`maxItems`, else from the 3 MiB request limit; the
//! limits). Only the upper bound is modelled, which is what the API server
//! checks. A function the model does not know fails loudly instead of
//! guessing low. kube-cel's `estimate_rule_cost` is not used: it is a coarse
//! heuristic (1,000-byte default strings, 1,000,000 budget) that accepts the
//! rules the API server refused.

use kube::core::cel::cel::Program;
use kube::core::cel::cel::common::ast::{Expr, LiteralValue, operators};
use serde_json::Value;

/// `StaticEstimatedCostLimit`: largest estimated cost of one rule.
pub const RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: largest total estimated cost of a CRD.
pub const CRD_LIMIT: u64 = 100_000_000;
/// The API server's request size limit, which bounds unbounded values.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
const CREATE_LIST: u64 = 10;

/// What the estimator knows of a value: its largest size (bytes of a string,
/// items of a list) and, for schema objects, their schema.
#[derive(Clone, Debug)]
enum Ty {
    Str(u64),
    List(u64, Box<Ty>),
    Obj(Value),
    /// Fixed-size values (bool, int, double): size 1.
    Scalar,
    /// A non-scalar whose size the API server cannot bound.
    Unbounded,
}

impl Ty {
    fn size(&self) -> u64 {
        match self {
            Ty::Str(n) | Ty::List(n, _) => *n,
            Ty::Scalar => 1,
            Ty::Unbounded => u64::MAX,
            // Comparing whole objects is not modelled (no rule of privnet does).
            Ty::Obj(_) => panic!("the size of an object is not modelled"),
        }
    }

    /// A value's type as declared by its schema.
    fn of_schema(schema: &Value) -> Ty {
        match schema["type"].as_str() {
            Some("string") => Ty::Str(match schema["maxLength"].as_u64() {
                // maxLength counts code points; the estimate counts bytes.
                Some(n) => n.saturating_mul(4),
                None => MAX_REQUEST_BYTES - 2,
            }),
            Some("array") => {
                let items = &schema["items"];
                let max = schema["maxItems"]
                    .as_u64()
                    .unwrap_or_else(|| (MAX_REQUEST_BYTES - 2) / (min_json_size(items) + 1));
                Ty::List(max, Box::new(Ty::of_schema(items)))
            }
            Some("object") => Ty::Obj(schema.clone()),
            Some("integer" | "number" | "boolean") => Ty::Scalar,
            _ if schema["x-kubernetes-int-or-string"] == true => Ty::Str(MAX_REQUEST_BYTES - 2),
            other => panic!("schema type {other:?} is not modelled"),
        }
    }
}

/// Smallest JSON encoding of a value of this schema (`""`, `0`, `[]`, `{}`).
fn min_json_size(schema: &Value) -> u64 {
    match schema["type"].as_str() {
        Some("boolean") => 4,
        Some("integer") | Some("number") => 1,
        _ => 2,
    }
}

/// `SizeEstimate.MultiplyByCostFactor`: rounds up, saturates.
fn factor(size: u64, f: f64) -> u64 {
    let v = (size as f64 * f).ceil();
    if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

/// Estimates one rule against the schema of the node it sits on.
pub fn rule_cost(rule: &str, schema: &Value) -> u64 {
    let program = Program::compile(rule).unwrap_or_else(|e| panic!("rule {rule:?}: {e}"));
    let this = Ty::of_schema(schema);
    let mut scope = vec![
        ("self".to_string(), this.clone()),
        ("oldSelf".to_string(), this),
    ];
    cost(&program.expression().expr, &mut scope).0
}

type Scope = Vec<(String, Ty)>;

fn lookup(scope: &Scope, name: &str) -> Ty {
    let found = scope.iter().rev().find(|(n, _)| n == name);
    found
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("unknown variable {name}"))
}

/// (upper bound of the cost, type of the result) of one expression.
fn cost(expr: &Expr, scope: &mut Scope) -> (u64, Ty) {
    match expr {
        Expr::Literal(LiteralValue::String(s)) => (0, Ty::Str(s.chars().count() as u64)),
        Expr::Literal(_) => (0, Ty::Scalar),
        Expr::Ident(name) => (1, lookup(scope, name)),
        Expr::Select(sel) => {
            let (c, operand) = cost(&sel.operand.expr, scope);
            let Ty::Obj(schema) = operand else {
                panic!("select .{} on a non-object", sel.field)
            };
            if sel.test {
                return (c.saturating_add(1), Ty::Scalar);
            }
            let field = &schema["properties"][&sel.field];
            assert!(!field.is_null(), "no field {} in the schema", sel.field);
            (c.saturating_add(1), Ty::of_schema(field))
        }
        Expr::List(list) => {
            let mut c = CREATE_LIST;
            let mut elem = Ty::Scalar;
            for e in &list.elements {
                let (ec, et) = cost(&e.expr, scope);
                c = c.saturating_add(ec);
                if !matches!(et, Ty::Scalar) {
                    // Elements of a literal list have no schema path.
                    elem = Ty::Unbounded;
                }
            }
            (c, Ty::List(list.elements.len() as u64, Box::new(elem)))
        }
        Expr::Comprehension(comp) => {
            let (rc, range) = cost(&comp.iter_range.expr, scope);
            let (ic, _) = cost(&comp.accu_init.expr, scope);
            let Ty::List(count, elem) = range else {
                panic!("comprehension over a non-list is not modelled")
            };
            assert!(
                matches!(comp.accu_init.expr, Expr::Literal(_)),
                "only all/exists/exists_one are modelled"
            );
            scope.push((comp.accu_var.clone(), Ty::Scalar));
            scope.push((comp.iter_var.clone(), *elem));
            let (lc, _) = cost(&comp.loop_cond.expr, scope);
            let (sc, _) = cost(&comp.loop_step.expr, scope);
            scope.pop();
            let (resc, _) = cost(&comp.result.expr, scope);
            scope.pop();
            let per_item = lc.saturating_add(sc);
            let total = [rc, ic, resc, count.saturating_mul(per_item)]
                .into_iter()
                .fold(0u64, u64::saturating_add);
            (total, Ty::Scalar)
        }
        Expr::Call(call) => {
            let target = call.target.as_ref().map(|t| cost(&t.expr, scope));
            let args: Vec<(u64, Ty)> = call.args.iter().map(|a| cost(&a.expr, scope)).collect();
            let target_cost = target.as_ref().map_or(0, |t| t.0);
            let (fc, ty) = function_cost(&call.func_name, target.map(|t| t.1), &args);
            (target_cost.saturating_add(fc), ty)
        }
        other => panic!("expression kind not modelled: {other:?}"),
    }
}

/// Cost of one call, arguments included (the target's own cost excluded).
fn function_cost(name: &str, target: Option<Ty>, args: &[(u64, Ty)]) -> (u64, Ty) {
    let arg_sum = args.iter().map(|a| a.0).fold(0u64, u64::saturating_add);
    let size = |i: usize| args[i].1.size();
    let target_size = || target.as_ref().expect("a member call").size();
    let plus = |c: u64| c.saturating_add(arg_sum);
    match name {
        operators::LOGICAL_AND | operators::LOGICAL_OR => (arg_sum, Ty::Scalar),
        operators::CONDITIONAL => {
            let branch = args[1].0.max(args[2].0);
            (args[0].0.saturating_add(branch), args[1].1.clone())
        }
        operators::EQUALS | operators::NOT_EQUALS => (
            plus(factor(size(0).min(size(1)), STRING_TRAVERSAL)),
            Ty::Scalar,
        ),
        operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => {
            let strings = matches!(args[0].1, Ty::Str(_)) || matches!(args[1].1, Ty::Str(_));
            let c = if strings {
                factor(size(0).min(size(1)), STRING_TRAVERSAL)
            } else {
                1
            };
            (plus(c), Ty::Scalar)
        }
        operators::ADD => match (&args[0].1, &args[1].1) {
            (Ty::Scalar, Ty::Scalar) => (plus(1), Ty::Scalar),
            (Ty::List(a, e), Ty::List(b, _)) => {
                (plus(1), Ty::List(a.saturating_add(*b), e.clone()))
            }
            _ => {
                let joined = size(0).saturating_add(size(1));
                (plus(factor(joined, STRING_TRAVERSAL)), Ty::Str(joined))
            }
        },
        operators::INDEX => match &args[0].1 {
            Ty::List(_, elem) => (plus(1), (**elem).clone()),
            other => panic!("index into {other:?} is not modelled"),
        },
        operators::LOGICAL_NOT
        | operators::NOT_STRICTLY_FALSE
        | operators::NEGATE
        | operators::SUBSTRACT
        | operators::MULTIPLY
        | operators::DIVIDE
        | operators::MODULO
        | "size"
        | "int"
        | "uint"
        | "double"
        | "bool" => (plus(1), Ty::Scalar),
        // Conversions have no result size: the API server treats it as unbounded.
        "string" => (plus(1), Ty::Unbounded),
        "matches" => {
            let (text, regex) = match target {
                Some(t) => (t.size(), size(0)),
                None => (size(0), size(1)),
            };
            let c = factor(text.saturating_add(1), STRING_TRAVERSAL)
                .saturating_mul(factor(regex, REGEX_LENGTH));
            (plus(c), Ty::Scalar)
        }
        "startsWith" | "endsWith" => (plus(factor(size(0), STRING_TRAVERSAL)), Ty::Scalar),
        "contains" => {
            let c = factor(target_size(), STRING_TRAVERSAL)
                .saturating_mul(factor(size(0), STRING_TRAVERSAL));
            (plus(c), Ty::Scalar)
        }
        // On a string: one traversal (on a list it would be per element).
        "indexOf" | "lastIndexOf" => (plus(factor(target_size(), STRING_TRAVERSAL)), Ty::Scalar),
        "substring" | "trim" | "lowerAscii" | "upperAscii" => {
            let n = target_size();
            (plus(factor(n, STRING_TRAVERSAL)), Ty::Str(n))
        }
        // The parts have no schema path, so their size is unbounded.
        "split" => {
            let n = target_size();
            let c = factor(n, 2.0 * STRING_TRAVERSAL);
            (plus(c), Ty::List(n, Box::new(Ty::Unbounded)))
        }
        other => panic!("cost of `{other}` is not modelled: add it from cel-go/apiserver cost.go"),
    }
}

/// One rule of a CRD with its estimate.
#[derive(Debug)]
pub struct RuleCost {
    /// Schema path of the node the rule sits on (`.spec.namespaces[*]`).
    pub path: String,
    /// The CEL expression.
    pub rule: String,
    /// Estimated cost of one evaluation.
    pub cost: u64,
    /// How many times it may run per object (product of enclosing maxItems).
    pub cardinality: u64,
}

/// Every rule under `schema`, estimated.
pub fn crd_rule_costs(schema: &Value) -> Vec<RuleCost> {
    let mut out = Vec::new();
    walk(schema, String::new(), 1, &mut out);
    out
}

fn walk(schema: &Value, path: String, cardinality: u64, out: &mut Vec<RuleCost>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = rule["rule"]
            .as_str()
            .expect("a rule has a rule")
            .to_string();
        out.push(RuleCost {
            path: path.clone(),
            cost: rule_cost(&rule, schema),
            rule,
            cardinality,
        });
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, child) in props {
            walk(child, format!("{path}.{name}"), cardinality, out);
        }
    }
    if let Some(items) = schema.get("items") {
        let n = match Ty::of_schema(schema) {
            Ty::List(n, _) => n,
            _ => unreachable!("items only on arrays"),
        };
        walk(
            items,
            format!("{path}[*]"),
            cardinality.saturating_mul(n),
            out,
        );
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        let n = MAX_REQUEST_BYTES / (min_json_size(values) + 6);
        walk(
            values,
            format!("{path}[*]"),
            cardinality.saturating_mul(n),
            out,
        );
    }
}

/// What a kube-apiserver would say about these rules: one line per rule over
/// [`RULE_LIMIT`], and one if their total is over [`CRD_LIMIT`].
pub fn over_budget(costs: &[RuleCost]) -> Vec<String> {
    let mut errors: Vec<String> = costs
        .iter()
        .filter(|r| r.cost > RULE_LIMIT)
        .map(|r| {
            format!(
                "{}: rule {:?} estimated cost {} > {RULE_LIMIT}",
                r.path, r.rule, r.cost
            )
        })
        .collect();
    let total = costs
        .iter()
        .map(|r| r.cost.saturating_mul(r.cardinality))
        .fold(0u64, u64::saturating_add);
    if total > CRD_LIMIT {
        errors.push(format!("total estimated cost {total} > {CRD_LIMIT}"));
    }
    errors
}
