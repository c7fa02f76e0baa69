//! State machines: `state_machine`, `state_transitions` (omnibase_core) or
//! `fsm`. The initial state, every transition end and every terminal state
//! must be declared; unreachable states are a warning.

use std::collections::BTreeSet;

use crate::contract::{FromState, Ident, State, StateMachine, Transition};

use super::{Ctx, Cursor};

const STATE_EXPECTED: &str = "a state declared under states (state_name), or '*' as from_state";

/// Most states a state machine may declare.
pub const MAX_FSM_STATES: usize = 1_000;

/// Most transitions a state machine may come to, a transition from any
/// state (`from_state: '*'`) counting once per non-terminal state. The
/// generated code and its tests grow with that number times the states, so
/// without a bound a contract of a few kilobytes takes hours to generate.
/// The largest known contract comes to 32.
pub const MAX_FSM_TRANSITIONS: usize = 1_000;

/// An `E-FSM-SIZE` error at `at` when `count` is over `limit`.
fn over_limit(ctx: &mut Ctx, at: &Cursor, count: usize, limit: usize, what: &str) -> bool {
    if count <= limit {
        return false;
    }
    ctx.error(
        "E-FSM-SIZE",
        at,
        format!("the state machine comes to {count} {what}; the limit is {limit}"),
        format!("at most {limit}"),
    );
    true
}

fn action_names(c: Option<Cursor>) -> Vec<String> {
    let Some(c) = c else {
        return Vec::new();
    };
    c.items()
        .iter()
        .filter_map(|a| {
            a.scalar()
                .or_else(|| a.get_any(&["action_name", "name"]).and_then(|n| n.scalar()))
        })
        .collect()
}

fn ident(ctx: &mut Ctx, at: &Cursor, text: &str, what: &str) -> Option<Ident> {
    match Ident::new(text) {
        Ok(i) => Some(i),
        Err(e) => {
            ctx.error(
                "E-IDENT",
                at,
                format!("{what} {e}"),
                "a name with letters or digits",
            );
            None
        }
    }
}

pub fn state_machine(ctx: &mut Ctx, root: &Cursor) -> Option<StateMachine> {
    let sm = root.get_any(&["state_machine", "state_transitions", "fsm"])?;
    if sm.get("states").is_none() && sm.get("transitions").is_none() {
        ctx.warning(
            "W-UNSUPPORTED",
            &sm,
            "a state machine section without states or transitions is ignored",
            "states and transitions lists",
        );
        return None;
    }
    let name = sm
        .get_any(&["state_machine_name", "name"])
        .and_then(|n| n.scalar())
        .unwrap_or_else(|| "state_machine".into());

    // Counted before anything is read, so that reading stays cheap too.
    for (list, limit) in [
        ("states", MAX_FSM_STATES),
        ("transitions", MAX_FSM_TRANSITIONS),
    ] {
        if let Some(at) = sm.get(list) {
            if over_limit(ctx, &at, at.items().len(), limit, list) {
                return None;
            }
        }
    }

    let mut states: Vec<State> = Vec::new();
    let mut declared: Vec<(String, Cursor)> = Vec::new();
    for item in sm.get("states").map(|s| s.items()).unwrap_or_default() {
        let (at, text) = match item.scalar() {
            Some(t) => (item.clone(), t),
            None => match item.get_any(&["state_name", "name"]) {
                Some(c) => {
                    let t = c.scalar().unwrap_or_default();
                    (c, t)
                }
                None => {
                    ctx.error(
                        "E-FSM-STATE",
                        &item,
                        "a state without a state_name",
                        "state_name: <name>",
                    );
                    continue;
                }
            },
        };
        let Some(id) = ident(ctx, &at, &text, "state name") else {
            continue;
        };
        if let Some(prev) = states.iter().find(|s| s.name.rust == id.rust) {
            ctx.error(
                "E-FSM-STATE",
                &at,
                format!(
                    "state {:?} is declared twice (as {:?})",
                    text, prev.name.original
                ),
                "each state once",
            );
            continue;
        }
        declared.push((text.clone(), at.clone()));
        states.push(State {
            name: id,
            description: item.get("description").and_then(|d| d.scalar()),
            terminal: item
                .get("is_terminal")
                .and_then(|t| t.bool())
                .unwrap_or(false),
            entry_actions: action_names(item.get("entry_actions")),
            exit_actions: action_names(item.get("exit_actions")),
        });
    }
    let find = |text: &str| -> Option<Ident> {
        let id = Ident::new(text).ok()?;
        states
            .iter()
            .find(|s| s.name.rust == id.rust)
            .map(|s| s.name.clone())
    };

    let initial = match sm.get("initial_state") {
        Some(c) => {
            let text = c.scalar().unwrap_or_default();
            match find(&text) {
                Some(i) => Some(i),
                None => {
                    ctx.error(
                        "E-FSM-STATE",
                        &c,
                        format!("initial_state {text:?} is not a declared state"),
                        STATE_EXPECTED,
                    );
                    None
                }
            }
        }
        None => {
            ctx.error(
                "E-FSM-STATE",
                &sm,
                "the state machine has no initial_state",
                "initial_state: <a declared state>",
            );
            None
        }
    };

    let mut transitions = Vec::new();
    for item in sm.get("transitions").map(|s| s.items()).unwrap_or_default() {
        let from_c = item.get("from_state").or_else(|| item.get("from"));
        let to_c = item.get("to_state").or_else(|| item.get("to"));
        let (Some(from_c), Some(to_c)) = (from_c, to_c) else {
            ctx.error(
                "E-FSM-STATE",
                &item,
                "a transition needs from_state and to_state",
                "from_state: <state>, to_state: <state>, trigger: <event>",
            );
            continue;
        };
        let mut froms = Vec::new();
        for f in if from_c.is_seq() {
            from_c.items()
        } else {
            vec![from_c.clone()]
        } {
            let text = f.scalar().unwrap_or_default();
            if text.trim() == "*" {
                froms.push(FromState::Any);
            } else if let Some(id) = find(&text) {
                froms.push(FromState::State(id));
            } else {
                ctx.error(
                    "E-FSM-STATE",
                    &f,
                    format!("transition from undeclared state {text:?}"),
                    STATE_EXPECTED,
                );
            }
        }
        let to_text = to_c.scalar().unwrap_or_default();
        let to = find(&to_text);
        if to.is_none() {
            ctx.error(
                "E-FSM-STATE",
                &to_c,
                format!("transition to undeclared state {to_text:?}"),
                "a state declared under states (state_name)",
            );
        }
        let trigger_c = item.get_any(&["trigger", "event", "transition_name", "name"]);
        let trigger = match &trigger_c {
            Some(c) => {
                let t = c.scalar().unwrap_or_default();
                ident(ctx, c, &t, "trigger")
            }
            None => {
                let from_name = froms
                    .first()
                    .map(|f| match f {
                        FromState::Any => "any".to_owned(),
                        FromState::State(s) => s.rust.clone(),
                    })
                    .unwrap_or_default();
                Ident::new(&format!("{from_name}_to_{to_text}")).ok()
            }
        };
        let (Some(to), Some(trigger)) = (to, trigger) else {
            continue;
        };
        let mut guards = Vec::new();
        for (i, cond) in item
            .get_any(&["conditions", "guards"])
            .map(|c| c.items())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let named = cond
                .get_any(&["condition_name", "name"])
                .and_then(|n| n.scalar())
                .or_else(|| {
                    cond.scalar()
                        .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                });
            let text = named.unwrap_or_else(|| format!("{}_condition_{}", trigger.rust, i + 1));
            if let Ok(g) = Ident::new(&text) {
                if !guards.contains(&g) {
                    guards.push(g);
                }
            }
        }
        for from in froms {
            transitions.push(Transition {
                from,
                to: to.clone(),
                trigger: trigger.clone(),
                description: item.get("description").and_then(|d| d.scalar()),
                guards: guards.clone(),
                actions: action_names(item.get("actions")),
                origin: item.origin(),
            });
        }
    }

    let mut terminal: Vec<Ident> = Vec::new();
    if let Some(list) = sm.get("terminal_states") {
        for item in list.items() {
            let text = item.scalar().unwrap_or_default();
            match find(&text) {
                Some(id) => {
                    if !terminal.contains(&id) {
                        terminal.push(id);
                    }
                }
                None => ctx.error(
                    "E-FSM-STATE",
                    &item,
                    format!("terminal state {text:?} is not a declared state"),
                    "a state declared under states (state_name)",
                ),
            }
        }
    }
    for s in &mut states {
        if terminal.contains(&s.name) {
            s.terminal = true;
        } else if s.terminal {
            terminal.push(s.name.clone());
        }
    }

    let open = states.iter().filter(|s| !s.terminal).count();
    let expanded: usize = transitions
        .iter()
        .map(|t| match t.from {
            FromState::Any => open,
            FromState::State(_) => 1,
        })
        .sum();
    let what = "transitions (one from any state counting once per non-terminal state)";
    let at = sm.get("transitions").unwrap_or_else(|| sm.clone());
    if over_limit(ctx, &at, expanded, MAX_FSM_TRANSITIONS, what) {
        return None;
    }

    let initial = initial?;
    // Reachability from the initial state.
    let mut reached: BTreeSet<String> = BTreeSet::new();
    reached.insert(initial.rust.clone());
    loop {
        let before = reached.len();
        for t in &transitions {
            let from_ok = match &t.from {
                FromState::Any => true,
                FromState::State(s) => reached.contains(&s.rust),
            };
            if from_ok {
                reached.insert(t.to.rust.clone());
            }
        }
        if reached.len() == before {
            break;
        }
    }
    for (text, at) in &declared {
        if let Ok(id) = Ident::new(text) {
            if !reached.contains(&id.rust) {
                ctx.warning(
                    "W-FSM-UNREACHABLE",
                    at,
                    format!(
                        "state {text:?} cannot be reached from the initial state {:?}",
                        initial.original
                    ),
                    "a transition leading to this state",
                );
            }
        }
    }

    Some(StateMachine {
        name,
        initial,
        states,
        transitions,
        terminal,
        origin: sm.origin(),
    })
}
