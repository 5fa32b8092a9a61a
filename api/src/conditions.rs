//! Status conditions (the `metav1.Condition` shape) and the one helper that
//! updates them without bumping `lastTransitionTime` when nothing changed.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Sets (or replaces) the condition of `type_`; keeps the previous transition
/// time when the status did not change, so watchers see no churn.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now,
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_only_moves_when_status_changes() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            "Ready",
            false,
            "Pending",
            "waiting",
            Some(1),
            at(10),
        );
        set_condition(
            &mut conds,
            "Ready",
            false,
            "Pending",
            "still",
            Some(2),
            at(20),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].observed_generation, Some(2));
        set_condition(
            &mut conds,
            "Ready",
            true,
            "Allocated",
            "ok",
            Some(2),
            at(30),
        );
        assert_eq!(conds[0].last_transition_time, at(30));
        assert_eq!(conds[0].status, "True");
    }
}
