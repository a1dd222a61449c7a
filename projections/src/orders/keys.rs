//! The order summary's keys: how an order, its customer and status index
//! entries and the status counts are laid out in the model.

use strata_aggregates::domain::order::OrderStatus;

// Keys: `o` order id → OrderSummary; `c` len(customer) u32 BE, customer,
// order id → (); `n` status name → count u64 BE; `t` status name, 0, order
// id → () (the status index; status names hold no 0 byte).
pub(super) const ORDER: u8 = b'o';
const CUSTOMER: u8 = b'c';
pub(super) const COUNT: u8 = b'n';
const STATUS: u8 = b't';

pub(super) fn order_key(order_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(order_id.len() + 1);
    k.push(ORDER);
    k.extend_from_slice(order_id.as_bytes());
    k
}

pub(super) fn customer_prefix(customer: &str) -> Vec<u8> {
    customer_key_with(customer, 0)
}

/// A customer's key prefix, with room for `more` bytes after it.
fn customer_key_with(customer: &str, more: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(customer.len() + 5 + more);
    k.push(CUSTOMER);
    k.extend_from_slice(&(customer.len() as u32).to_be_bytes());
    k.extend_from_slice(customer.as_bytes());
    k
}

pub(super) fn customer_key(customer: &str, order_id: &str) -> Vec<u8> {
    // Allocated once, at its full length: the fold makes one per order.
    let mut k = customer_key_with(customer, order_id.len());
    k.extend_from_slice(order_id.as_bytes());
    k
}

pub(super) fn status_prefix(status: OrderStatus) -> Vec<u8> {
    status_key_with(status, 0)
}

/// A status's key prefix, with room for `more` bytes after it.
fn status_key_with(status: OrderStatus, more: usize) -> Vec<u8> {
    let name = status.as_str();
    let mut k = Vec::with_capacity(name.len() + 2 + more);
    k.push(STATUS);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub(super) fn status_key(status: OrderStatus, order_id: &str) -> Vec<u8> {
    // Allocated once, at its full length: the fold makes two per event.
    let mut k = status_key_with(status, order_id.len());
    k.extend_from_slice(order_id.as_bytes());
    k
}

/// The first key greater than `key` (`key` followed by a 0 byte): where a
/// page that starts after `key` starts.
pub(super) fn after_key(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

/// [`COUNT`] and the status's name: a constant, since the fold bumps two
/// counts for every order event.
pub(super) fn count_key(status: OrderStatus) -> &'static [u8] {
    match status {
        OrderStatus::New => b"nnew",
        OrderStatus::Placed => b"nplaced",
        OrderStatus::Paid => b"npaid",
        OrderStatus::Shipped => b"nshipped",
        OrderStatus::Delivered => b"ndelivered",
        OrderStatus::Cancelled => b"ncancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_keys_are_the_count_prefix_and_the_status_name() {
        for s in OrderStatus::ALL {
            assert_eq!(count_key(s), [&[COUNT], s.as_str().as_bytes()].concat(), "{s:?}");
        }
    }

    #[test]
    fn status_keys_of_one_status_never_prefix_another() {
        for a in OrderStatus::ALL {
            for b in OrderStatus::ALL {
                if a != b {
                    assert!(!status_key(a, "x").starts_with(&status_prefix(b)), "{a:?} {b:?}");
                }
            }
        }
        assert!(status_key(OrderStatus::Paid, "a") < status_key(OrderStatus::Paid, "a\0"));
        assert!(after_key(status_key(OrderStatus::Paid, "a")) <= status_key(OrderStatus::Paid, "a\0"));
        assert!(after_key(status_key(OrderStatus::Paid, "a")) > status_key(OrderStatus::Paid, "a"));
    }
}
