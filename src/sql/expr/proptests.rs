//! Properties of the scalar evaluator (proptest, fixed seed): every binary
//! operator at every result type, every cast, and every function, over
//! values of every kind, including ones no column could hold (out-of-range
//! dates, invalid JSON text, a numeric at its 131072-digit limit) and
//! combinations the binder would refuse, evaluates to a value or an error —
//! never a panic. Results can be written as text and as JSON.

use proptest::prelude::*;

use super::*;
use crate::repr::datetime::{DATE_END, DATE_MIN, TS_END, TS_MIN};
use crate::repr::interval::Interval;
use crate::repr::proptests::{all_types, config, edge_string, json_value, valid_datum};

fn edge_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            -1,
            2,
            7,
            i16::MIN as i64,
            i16::MAX as i64,
            i32::MIN as i64,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
            DATE_MIN,
            DATE_END,
            (1 << 28) + 1,
        ]),
        -1000i64..1000,
        any::<i64>(),
    ]
}

fn edge_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            0.0,
            -0.0,
            0.5,
            -2.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9.2e18,
            9.3e18,
            -9.223372036854775e18,
            3.4e38,
            1e-300,
        ]),
        prop::num::f64::ANY,
    ]
}

fn edge_numeric() -> impl Strategy<Value = Numeric> {
    prop_oneof![
        4 => valid_datum(&Type::Numeric).prop_map(|d| match d {
            Datum::Numeric(n) => n,
            _ => Numeric::zero(),
        }),
        1 => prop::sample::select(vec![
            "NaN",
            "Infinity",
            "-Infinity",
            "0",
            "0.00",
            "1e-16383",
            "9.99e131071",
            "-1e131071",
            "1e-1000",
            "0.5",
            "-2.5",
            "9223372036854775807.5",
            "-9223372036854775808",
        ])
        .prop_map(|t| Numeric::parse(t).unwrap_or_else(|_| Numeric::zero())),
    ]
}

/// A value of any kind, near the edges of each.
fn any_datum() -> impl Strategy<Value = Datum> {
    use crate::repr::datetime::{DATE_NEG_INF, DATE_POS_INF, TS_NEG_INF, TS_POS_INF};
    let interval =
        (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(|(months, days, micros)| Interval {
            months,
            days,
            micros,
        });
    prop_oneof![
        1 => Just(Datum::Null),
        1 => any::<bool>().prop_map(Datum::Bool),
        3 => edge_int().prop_map(Datum::Int),
        1 => edge_float().prop_map(|f| Datum::Float4(F64(f as f32 as f64))),
        2 => edge_float().prop_map(|f| Datum::Float8(F64(f))),
        3 => edge_numeric().prop_map(Datum::Numeric),
        3 => prop_oneof![
            edge_string(),
            any::<String>(),
            "[a-c%_\\\\]{0,6}",
            prop::sample::select(vec!["year", "epoch", "{a,1}", "{}", "[1,2]", "{\"a\": 1}"])
                .prop_map(str::to_string),
        ]
        .prop_map(Datum::Text),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Datum::Bytes),
        2 => prop_oneof![
            Just(DATE_POS_INF),
            Just(DATE_NEG_INF),
            Just(DATE_MIN as i32),
            Just(DATE_END as i32),
            -800_000i32..800_000,
            any::<i32>(),
        ]
        .prop_map(Datum::Date),
        2 => prop_oneof![
            Just(TS_POS_INF),
            Just(TS_NEG_INF),
            Just(TS_MIN),
            Just(TS_END - 1),
            Just(TS_END),
            Just(i64::MIN + 1),
            TS_MIN..TS_END,
            any::<i64>(),
        ]
        .prop_flat_map(|t| prop_oneof![Just(Datum::Timestamp(t)), Just(Datum::TimestampTz(t))]),
        1 => any::<u128>().prop_map(Datum::Uuid),
        2 => prop_oneof![
            json_value(3).prop_map(|v| {
                crate::repr::json::to_jsonb(&v.write(&[1], &mut 0)).unwrap_or_default()
            }),
            edge_string(),
        ]
        .prop_map(Datum::Json),
        2 => interval.prop_map(Datum::Interval),
    ]
}

fn any_type() -> impl Strategy<Value = Type> {
    prop::sample::select(all_types())
}

const BIN_OPS: &[BinOp] = &[
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Mod,
    BinOp::Eq,
    BinOp::NotEq,
    BinOp::Lt,
    BinOp::LtEq,
    BinOp::Gt,
    BinOp::GtEq,
    BinOp::And,
    BinOp::Or,
    BinOp::Concat,
];

const FIELDS: &[&str] = &[
    "epoch",
    "year",
    "isoyear",
    "decade",
    "century",
    "millennium",
    "month",
    "day",
    "quarter",
    "dow",
    "isodow",
    "doy",
    "week",
    "hour",
    "minute",
    "second",
    "milliseconds",
    "microseconds",
    "julian",
    "foo",
];

/// Every function the evaluator has, with each field or variant.
fn any_func() -> impl Strategy<Value = Func> {
    let plain = prop::sample::select(vec![
        Func::Lower,
        Func::Upper,
        Func::Length,
        Func::OctetLength,
        Func::Substr,
        Func::Strpos,
        Func::Replace,
        Func::Trim {
            leading: true,
            trailing: true,
        },
        Func::Trim {
            leading: true,
            trailing: false,
        },
        Func::Trim {
            leading: false,
            trailing: true,
        },
        Func::BpcharToText,
        Func::Concat,
        Func::ConcatWs,
        Func::SplitPart,
        Func::Left,
        Func::Right,
        Func::Repeat,
        Func::Reverse,
        Func::Lpad,
        Func::Rpad,
        Func::Initcap,
        Func::Abs,
        Func::Sign,
        Func::Round,
        Func::Trunc,
        Func::Floor,
        Func::Ceil,
        Func::Sqrt,
        Func::Cbrt,
        Func::Exp,
        Func::Ln,
        Func::Log10,
        Func::Power,
        Func::Div,
        Func::JsonGet { as_text: false },
        Func::JsonGet { as_text: true },
    ]);
    let field = prop::sample::select(FIELDS).prop_map(str::to_string);
    prop_oneof![
        6 => plain,
        1 => field.clone().prop_map(Func::Extract),
        1 => field.clone().prop_map(Func::DatePart),
        1 => field.prop_map(Func::DateTrunc),
        1 => (prop::collection::vec("[a-c]|-?[0-9]", 0..3), any::<bool>())
            .prop_map(|(steps, as_text)| Func::JsonPath { steps, as_text }),
        1 => any_type().prop_map(|t| Func::ArrayText(t, Default::default())),
        2 => (zoned(), prop::sample::select(FIELDS).prop_map(str::to_string), any_type())
            .prop_flat_map(|(cx, field, ty)| {
                prop::sample::select(vec![
                    Func::ToLocal(cx.clone()),
                    Func::FromLocal(cx.clone()),
                    Func::DateTimeText(cx.clone()),
                    Func::ParseDateTime(cx.clone()),
                    Func::DateTruncIn(field, cx.clone()),
                    Func::AddInterval(cx.clone()),
                    Func::JsonIn(ty, cx.clone()),
                    Func::ArrayText(Type::TimestampTz, cx),
                ])
            }),
    ]
}

/// Session settings that move values: zones with DST, half hours, local
/// mean time, and every DateStyle.
fn zoned() -> impl Strategy<Value = crate::repr::tz::TimeCx> {
    (
        prop::sample::select(vec![
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Europe/Dublin",
            "<+05:30>-05:30",
        ]),
        prop::sample::select(vec!["ISO, MDY", "SQL, DMY", "Postgres, YMD", "German"]),
    )
        .prop_map(|(zone, style)| {
            crate::repr::tz::TimeCx::resolve(zone, style).expect("known zone")
        })
}

/// Arguments for `func`: either of any kind, or of the kinds it reads.
fn args_for(func: &Func) -> BoxedStrategy<Vec<Datum>> {
    let typed = |types: Vec<Type>| {
        types
            .iter()
            .map(|t| prop_oneof![4 => valid_datum(t), 1 => any_datum()].boxed())
            .collect::<Vec<_>>()
    };
    let text = Type::Text;
    let int = Type::Int8;
    let signature = match func {
        Func::Substr | Func::SplitPart | Func::Lpad | Func::Rpad | Func::Replace => {
            vec![text.clone(), int.clone(), int]
        }
        Func::Left | Func::Right | Func::Repeat => vec![text, int],
        Func::Round | Func::Trunc | Func::Div | Func::Power => vec![Type::Numeric, Type::Int4],
        Func::Extract(_) | Func::DatePart(_) | Func::DateTrunc(_) => vec![Type::Timestamp],
        Func::ToLocal(_) | Func::DateTruncIn(..) | Func::DateTimeText(_) | Func::JsonIn(..) => {
            vec![Type::TimestampTz]
        }
        Func::FromLocal(_) => vec![Type::Timestamp],
        Func::AddInterval(_) => vec![Type::TimestampTz, Type::Interval],
        Func::JsonGet { .. } | Func::JsonPath { .. } => vec![Type::Jsonb, text],
        _ => vec![text.clone(), text.clone(), text],
    };
    prop_oneof![prop::collection::vec(any_datum(), 0..4), typed(signature),].boxed()
}

fn lit(d: Datum) -> Box<Expr> {
    Box::new(Expr::Literal(d))
}

/// Evaluates; a value must also be writable as text, as JSON, and the
/// expression itself displayable.
fn check(e: &Expr) {
    let _ = e.to_string();
    if let Ok(v) = e.eval(&[]) {
        let _ = v.to_text();
        let _ = v.to_json_string();
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn binary_operators_never_panic(
        op in prop::sample::select(BIN_OPS),
        ty in any_type(),
        l in any_datum(),
        r in any_datum(),
    ) {
        check(&Expr::Binary { op, left: lit(l.clone()), right: lit(r.clone()), ty: ty.clone() });
        check(&Expr::IsDistinct { left: lit(l.clone()), right: lit(r.clone()), negated: false });
        check(&Expr::Neg(lit(l.clone()), ty.clone()));
        check(&Expr::Not(lit(l.clone())));
        check(&Expr::Cast { expr: lit(l.clone()), to: ty });
        check(&Expr::Extremum {
            args: vec![Expr::Literal(l.clone()), Expr::Literal(r.clone())],
            greatest: op == BinOp::Lt,
        });
        check(&Expr::InList {
            expr: lit(l.clone()),
            list: vec![Expr::Literal(r.clone()), Expr::Literal(Datum::Null)],
            negated: false,
        });
        check(&Expr::Case {
            branches: vec![(Expr::Literal(l.clone()), Expr::Literal(r.clone()))],
            otherwise: lit(Datum::Null),
        });
        check(&Expr::Coalesce(vec![Expr::Literal(Datum::Null), Expr::Literal(r.clone())]));
        check(&Expr::Like {
            expr: lit(l),
            pattern: lit(r),
            negated: false,
            case_insensitive: op == BinOp::Add,
        });
    }

}

proptest! {
    // Each case evaluates ~40 expressions.
    #![proptest_config(config(600))]

    #[test]
    fn typed_arithmetic_never_panics(
        op in prop::sample::select(BIN_OPS),
        (ty, l, r) in any_type().prop_flat_map(|t| (Just(t.clone()), valid_datum(&t), valid_datum(&t))),
        n in prop_oneof![edge_int().prop_map(Datum::Int), edge_float().prop_map(|f| Datum::Float8(F64(f)))],
        iv in valid_datum(&Type::Interval),
    ) {
        check(&Expr::Binary { op, left: lit(l.clone()), right: lit(r.clone()), ty: ty.clone() });
        // Dates and timestamps against numbers and intervals, as the binder types them.
        for result in [Type::Date, Type::Timestamp, Type::Interval, Type::Int4] {
            check(&Expr::Binary { op, left: lit(l.clone()), right: lit(n.clone()), ty: result.clone() });
            check(&Expr::Binary { op, left: lit(n.clone()), right: lit(l.clone()), ty: result.clone() });
            check(&Expr::Binary { op, left: lit(l.clone()), right: lit(iv.clone()), ty: result.clone() });
            check(&Expr::Binary { op, left: lit(iv.clone()), right: lit(l.clone()), ty: result });
        }
        for to in all_types() {
            check(&Expr::Cast { expr: lit(l.clone()), to });
        }
    }

}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn numeric_typmods_never_panic(n in edge_numeric(), precision in 1u32..=1000, scale in 0u32..=1000) {
        check(&Expr::NumericTypmod {
            expr: lit(Datum::Numeric(n)),
            precision,
            scale: scale.min(precision),
        });
    }

}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn functions_never_panic((func, args) in any_func().prop_flat_map(|f| (Just(f.clone()), args_for(&f))), ty in any_type()) {
        let call = Expr::Call {
            func,
            args: args.into_iter().map(Expr::Literal).collect(),
            ty,
        };
        check(&call);
    }
}

/// Expressions [`Expr::cannot_fail`] accepts, over any columns and literals.
fn infallible_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (0usize..6).prop_map(Expr::Column),
        any_datum().prop_map(Expr::Literal),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (inner.clone(), any::<bool>()).prop_map(|(e, negated)| Expr::IsNull {
                expr: Box::new(e),
                negated,
            }),
            (inner.clone(), inner.clone(), any::<bool>(), any_type()).prop_map(
                |(l, r, and, ty)| Expr::Binary {
                    op: if and { BinOp::And } else { BinOp::Or },
                    left: Box::new(l),
                    right: Box::new(r),
                    ty,
                }
            ),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::Coalesce),
            (
                prop::collection::vec((inner.clone(), inner.clone()), 1..3),
                inner
            )
                .prop_map(|(branches, otherwise)| Expr::Case {
                    branches,
                    otherwise: Box::new(otherwise),
                }),
        ]
    })
}

proptest! {
    #![proptest_config(config(1000))]

    /// What `cannot_fail` accepts evaluates to a value over rows of any
    /// values, of any length (a missing column reads as NULL): operators
    /// that evaluate only such expressions have no error output.
    #[test]
    fn what_cannot_fail_does_not_fail(
        e in infallible_expr(),
        row in prop::collection::vec(any_datum(), 0..6),
    ) {
        prop_assert!(e.cannot_fail(), "{e:?}");
        prop_assert!(e.eval(&row).is_ok(), "{e:?} over {row:?}");
    }
}

#[test]
fn comparisons_arithmetic_and_calls_may_fail() {
    let col = |i| Box::new(Expr::Column(i));
    let cmp = Expr::Binary {
        op: BinOp::Lt,
        left: col(0),
        right: col(1),
        ty: Type::Bool,
    };
    // An integer and a text value fail to compare.
    assert!(cmp.eval(&[Datum::Int(1), Datum::Text("a".into())]).is_err());
    assert!(!cmp.cannot_fail());
    let and = Expr::Binary {
        op: BinOp::And,
        left: Box::new(Expr::Literal(Datum::Bool(true))),
        right: Box::new(cmp),
        ty: Type::Bool,
    };
    assert!(!and.cannot_fail(), "a fallible operand makes AND fallible");
    let sum = Expr::Binary {
        op: BinOp::Add,
        left: col(0),
        right: col(1),
        ty: Type::Int2,
    };
    assert!(!sum.cannot_fail());
    assert!(Expr::Coalesce(vec![Expr::Column(3), Expr::Literal(Datum::Int(0))]).cannot_fail());
}
