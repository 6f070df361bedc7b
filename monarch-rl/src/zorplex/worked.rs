//! Sums written out column by column, as the scripted oracle writes them
//! and as a model trained from scratch learns to.
//!
//! A small transformer that must write `48 + 57 = 105` in one go has to
//! carry across columns before it writes the first digit; it learns that
//! slowly. Written out from the units up, every digit it writes depends on
//! a few digits just before it:
//!
//! ```
//! use monarch_rl::zorplex::worked_sum;
//!
//! assert_eq!(worked_sum(48, 57), "48 + 57: 8+7=15, 4+5+1=10, so 105.");
//! assert_eq!(worked_sum(5, 30), "5 + 30: 5+0=05, 0+3+0=03, so 35.");
//! ```

/// `a + b` worked column by column for operands of `0..=999`: each
/// column's two digits (a missing one reads as 0), the carry from the
/// column before, and their sum as two digits, then the total. Other
/// operands (negative, or of four digits and more) are written plainly,
/// `a + b = s.`
pub fn worked_sum(a: i64, b: i64) -> String {
    if !(0..=999).contains(&a) || !(0..=999).contains(&b) {
        return format!("{a} + {b} = {}.", a + b);
    }
    let digit = |n: i64, column: u32| n / 10_i64.pow(column) % 10;
    // Columns past the tens are written only where an operand has them.
    let columns = if a.max(b) >= 100 { 3 } else { 2 };
    let mut facts = Vec::with_capacity(columns as usize);
    let mut carry = 0;
    for column in 0..columns {
        let (x, y) = (digit(a, column), digit(b, column));
        let sum = x + y + carry;
        facts.push(if column == 0 {
            format!("{x}+{y}={sum:02}")
        } else {
            format!("{x}+{y}+{carry}={sum:02}")
        });
        carry = sum / 10;
    }
    format!("{a} + {b}: {}, so {}.", facts.join(", "), a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_working_ends_in_the_sum_and_its_facts_add_up() {
        for a in 0..=120 {
            for b in [0, 1, 9, 10, 55, 99, 100, 101] {
                let text = worked_sum(a, b);
                let (_, working) = text.split_once(": ").unwrap();
                let total = working.rsplit_once("so ").unwrap().1;
                assert_eq!(total, format!("{}.", a + b), "{text}");
                for fact in working.split(", ").filter(|f| f.contains('=')) {
                    let (terms, sum) = fact.split_once('=').unwrap();
                    let terms: i64 = terms.split('+').map(|t| t.parse::<i64>().unwrap()).sum();
                    assert_eq!(terms, sum.parse::<i64>().unwrap(), "{text}");
                }
            }
        }
    }

    #[test]
    fn a_hundreds_column_is_written_only_where_an_operand_has_one() {
        assert_eq!(
            worked_sum(100, 57),
            "100 + 57: 0+7=07, 0+5+0=05, 1+0+0=01, so 157."
        );
        assert_eq!(worked_sum(99, 99), "99 + 99: 9+9=18, 9+9+1=19, so 198.");
    }

    #[test]
    fn operands_outside_three_digits_are_written_plainly() {
        assert_eq!(worked_sum(-4, 10), "-4 + 10 = 6.");
        assert_eq!(worked_sum(1000, 1), "1000 + 1 = 1001.");
    }
}
