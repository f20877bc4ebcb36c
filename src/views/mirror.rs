//! Registry operations as they travel between the processes of a cluster
//! ([`crate::cluster::Mirror`]): converting the registry's types to their
//! wire forms and doing an operation to a registry.

use std::collections::HashSet;

use crate::cluster::{Mirror, WireDef, WireFault, WireHealth};
use crate::pg::Lsn;
use crate::sql::{Column, ParamFrom, ViewParam};

use super::{Fault, Health, Refused, Registry, ViewDef};

impl From<&ViewDef> for WireDef {
    fn from(d: &ViewDef) -> WireDef {
        WireDef {
            sql: d.sql.clone(),
            columns: d
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.clone()))
                .collect(),
            plan: d.plan.clone(),
            params: d
                .params
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.ty.clone(),
                        p.from == ParamFrom::Token,
                        p.as_text,
                    )
                })
                .collect(),
        }
    }
}

impl From<WireDef> for ViewDef {
    fn from(d: WireDef) -> ViewDef {
        ViewDef {
            sql: d.sql,
            columns: d
                .columns
                .into_iter()
                .map(|(name, ty)| Column { name, ty })
                .collect(),
            plan: d.plan,
            params: d
                .params
                .into_iter()
                .map(|(name, ty, token, as_text)| ViewParam {
                    name,
                    ty,
                    from: if token {
                        ParamFrom::Token
                    } else {
                        ParamFrom::Request
                    },
                    as_text,
                })
                .collect(),
        }
    }
}

impl From<&Health> for WireHealth {
    fn from(h: &Health) -> WireHealth {
        match h {
            Health::Starting => WireHealth::Starting,
            Health::Streaming { snapshot_lsn } => WireHealth::Streaming(snapshot_lsn.0),
            Health::Reconnecting { reason } => WireHealth::Reconnecting(reason.clone()),
            Health::Failed { reason } => WireHealth::Failed(reason.clone()),
        }
    }
}

impl From<WireHealth> for Health {
    fn from(h: WireHealth) -> Health {
        match h {
            WireHealth::Starting => Health::Starting,
            WireHealth::Streaming(lsn) => Health::Streaming {
                snapshot_lsn: Lsn(lsn),
            },
            WireHealth::Reconnecting(reason) => Health::Reconnecting { reason },
            WireHealth::Failed(reason) => Health::Failed { reason },
        }
    }
}

impl From<&Fault> for WireFault {
    fn from(f: &Fault) -> WireFault {
        match f {
            Fault::Server => WireFault::Server,
            Fault::Table => WireFault::Table,
            Fault::Schema => WireFault::Schema,
        }
    }
}

impl From<WireFault> for Fault {
    fn from(f: WireFault) -> Fault {
        match f {
            WireFault::Server => Fault::Server,
            WireFault::Table => Fault::Table,
            WireFault::Schema => Fault::Schema,
        }
    }
}

impl From<&Refused> for Mirror {
    fn from(r: &Refused) -> Mirror {
        Mirror::Refuse {
            name: r.name.clone(),
            sql: r.sql.clone(),
            error: r.error.clone(),
            detail: r.detail.clone(),
        }
    }
}

impl Registry {
    /// Does `op` to this registry; `reset_on_ready` collects the
    /// dataflows whose readiness resets their subscribers.
    pub fn mirror(&self, op: Mirror, reset_on_ready: &mut HashSet<usize>) {
        let registry = self;
        match op {
            Mirror::Declare { name } => registry.declare(&name),
            Mirror::Refuse {
                name,
                sql,
                error,
                detail,
            } => registry.refuse(Refused {
                name,
                sql,
                error,
                detail,
            }),
            Mirror::Attach {
                name,
                def,
                dataflow,
            } => registry.attach(&name, def.into(), dataflow),
            Mirror::Detach { dataflow } => {
                reset_on_ready.remove(&dataflow);
                registry.detach(dataflow)
            }
            Mirror::Remove { name, message } => registry.remove(&name, &message),
            Mirror::ResetOnReady { dataflow } => {
                reset_on_ready.insert(dataflow);
            }
            Mirror::SetFault {
                name,
                fault,
                message,
            } => registry.set_fault(&name, fault.into(), message),
            Mirror::SetHealth(h) => registry.set_health(h.into()),
            Mirror::TuplesRequested {
                view,
                tuples,
                ticket,
            } => registry.tuples_requested(&view, &tuples, ticket),
            Mirror::TuplesRetracted { view, tuples } => registry.tuples_retracted(&view, &tuples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::Type;

    #[test]
    fn definitions_survive_the_wire() {
        let def = ViewDef {
            sql: "select 1".into(),
            columns: vec![Column {
                name: "a".into(),
                ty: Type::Int4,
            }],
            plan: "Project".into(),
            params: vec![ViewParam {
                name: "sub".into(),
                ty: Type::Text,
                from: ParamFrom::Token,
                as_text: true,
            }],
        };
        let back: ViewDef = WireDef::from(&def).into();
        assert_eq!(back.columns, def.columns);
        assert_eq!(back.params, def.params);
        assert_eq!(back.sql, def.sql);
    }
}
