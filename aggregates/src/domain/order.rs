//! Orders: `Place → Placed → Pay → Paid → Ship → Shipped → Deliver →
//! Delivered`, and `Cancel` from Placed or Paid.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use strata_store::{Classify, ErrorKind};

use crate::aggregate::{Aggregate, Snapshottable};
use crate::codec::DomainEvent;

/// The most lines one order may have.
pub const MAX_ORDER_LINES: usize = 100;

/// One line of an order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderLine {
    /// The stock item ordered.
    pub sku: String,
    /// How many units (at least 1).
    pub quantity: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Where an order is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not placed yet (the stream has no events).
    #[default]
    New,
    /// Placed; stock reserved; awaiting payment.
    Placed,
    /// Paid in full.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Cancelled before shipment; its reservations were released.
    Cancelled,
}

/// The events of an order stream (`order-{id}`). Variants are only ever
/// added at the end (bincode identifies them by index).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order was placed.
    OrderPlaced {
        /// The order's id (the stream is `order-{order_id}`).
        order_id: String,
        /// Who placed it.
        customer: String,
        /// What was ordered.
        lines: Vec<OrderLine>,
        /// Sum of quantity × unit price over the lines, in cents.
        total_cents: u64,
    },
    /// The order was paid in full.
    OrderPaid {
        /// The amount paid, equal to the total.
        amount_cents: u64,
    },
    /// The order was shipped.
    OrderShipped {
        /// The carrier's tracking reference, if any.
        tracking: Option<String>,
    },
    /// The order was delivered.
    OrderDelivered,
    /// The order was cancelled.
    OrderCancelled {
        /// Why, if said.
        reason: Option<String>,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderPaid { .. } => "OrderPaid",
            OrderEvent::OrderShipped { .. } => "OrderShipped",
            OrderEvent::OrderDelivered => "OrderDelivered",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

impl OrderStatus {
    /// The commands an order in this status accepts.
    pub fn allowed_commands(self) -> &'static [OrderCommandKind] {
        use OrderCommandKind::*;
        match self {
            OrderStatus::New => &[Place],
            OrderStatus::Placed => &[Pay, Cancel],
            OrderStatus::Paid => &[Ship, Cancel],
            OrderStatus::Shipped => &[Deliver],
            OrderStatus::Delivered | OrderStatus::Cancelled => &[],
        }
    }

    /// Every status, in life order.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::New,
        OrderStatus::Placed,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can be asked of an order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OrderCommand {
    /// Place a new order (the order's stream must have no events). Runs
    /// only through [`OrderService`](crate::domain::service::OrderService),
    /// which reserves the stock in the same atomic append (as `Ship` and
    /// `Cancel` commit and release it); `Repository::execute` refuses it
    /// with [`OrderError::ServiceOnly`].
    Place {
        /// The order's id; must be the id the command is executed on (see
        /// `Aggregate::command_id`).
        order_id: String,
        /// Who places it (not empty).
        customer: String,
        /// What is ordered: 1 to [`MAX_ORDER_LINES`] lines, one per SKU, each
        /// with a quantity of at least 1.
        lines: Vec<OrderLine>,
    },
    /// Pay the order; the amount must equal its total.
    Pay {
        /// The amount paid, in cents.
        amount_cents: u64,
    },
    /// Hand a paid order to the carrier.
    Ship {
        /// The carrier's tracking reference, if any.
        tracking: Option<String>,
    },
    /// Record that a shipped order arrived.
    Deliver,
    /// Cancel a placed or paid order.
    Cancel {
        /// Why, if said.
        reason: Option<String>,
    },
}

impl OrderCommand {
    /// Which kind of command this is.
    pub fn kind(&self) -> OrderCommandKind {
        match self {
            OrderCommand::Place { .. } => OrderCommandKind::Place,
            OrderCommand::Pay { .. } => OrderCommandKind::Pay,
            OrderCommand::Ship { .. } => OrderCommandKind::Ship,
            OrderCommand::Deliver => OrderCommandKind::Deliver,
            OrderCommand::Cancel { .. } => OrderCommandKind::Cancel,
        }
    }
}

/// The kinds of [`OrderCommand`], named in refusals and in the list of
/// commands an order accepts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderCommandKind {
    /// [`OrderCommand::Place`].
    Place,
    /// [`OrderCommand::Pay`].
    Pay,
    /// [`OrderCommand::Ship`].
    Ship,
    /// [`OrderCommand::Deliver`].
    Deliver,
    /// [`OrderCommand::Cancel`].
    Cancel,
}

impl OrderCommandKind {
    /// Every kind.
    pub const ALL: [OrderCommandKind; 5] = [
        OrderCommandKind::Place,
        OrderCommandKind::Pay,
        OrderCommandKind::Ship,
        OrderCommandKind::Deliver,
        OrderCommandKind::Cancel,
    ];

    /// The snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderCommandKind::Place => "place",
            OrderCommandKind::Pay => "pay",
            OrderCommandKind::Ship => "ship",
            OrderCommandKind::Deliver => "deliver",
            OrderCommandKind::Cancel => "cancel",
        }
    }
}

impl fmt::Display for OrderCommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order refused a command. Nothing was appended.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// `Place` for an order id that already has an order.
    ///
    /// Handling: a duplicate create; the client reads the existing order or
    /// picks another id. Kind: [`ErrorKind::Conflict`].
    #[error("order {order_id} already exists (status {status})")]
    AlreadyExists {
        /// The existing order's id.
        order_id: String,
        /// Its status.
        status: OrderStatus,
    },
    /// The command is not allowed in the order's status.
    ///
    /// Handling: a resource state conflict, listing
    /// `from.allowed_commands()`. Kind: [`ErrorKind::Conflict`], except that
    /// `from: New` means there is no such order: [`ErrorKind::NotFound`].
    #[error("cannot {command} an order that is {from}")]
    InvalidTransition {
        /// The order's status.
        from: OrderStatus,
        /// The refused command.
        command: OrderCommandKind,
    },
    /// The amount paid is not the order's total.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("payment of {amount_cents} cents does not match the order total of {total_cents} cents")]
    PaymentMismatch {
        /// The order's total.
        total_cents: u64,
        /// The amount offered.
        amount_cents: u64,
    },
    /// The order id is empty or cannot name a stream.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid order id {order_id:?}: {reason}")]
    InvalidOrderId {
        /// The id given.
        order_id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The customer is empty.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("the customer must not be empty")]
    EmptyCustomer,
    /// The order has no lines.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("an order needs at least one line")]
    NoLines,
    /// The order has more than [`MAX_ORDER_LINES`] lines.
    ///
    /// Handling: bad input; split the order. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("an order has at most {max} lines, got {count}")]
    TooManyLines {
        /// Lines given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A line orders zero units.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("line for {sku} has quantity 0")]
    ZeroQuantity {
        /// The line's SKU.
        sku: String,
    },
    /// A line's SKU is empty or cannot name a stock stream.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid SKU {sku:?}: {reason}")]
    InvalidSku {
        /// The SKU given.
        sku: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two lines name the same SKU.
    ///
    /// Handling: bad input; merge the lines. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("SKU {sku} appears on more than one line")]
    DuplicateSku {
        /// The SKU.
        sku: String,
    },
    /// `Place`, `Ship` or `Cancel` sent to the order on its own (through
    /// `Repository::execute`): they reserve, commit or release stock, so
    /// only the order service runs them, in one atomic append with the
    /// stock items' events.
    ///
    /// Handling: bad input; send it through `OrderService`. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("cannot {command} an order directly: it moves stock, send it through the order service")]
    ServiceOnly {
        /// The refused command.
        command: OrderCommandKind,
    },
    /// The total does not fit in 64 bits of cents.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("the order total overflows")]
    TotalOverflow,
}

impl OrderError {
    /// What kind of refusal this is: [`ErrorKind::Conflict`] for a
    /// duplicate or a command the order's status refuses,
    /// [`ErrorKind::NotFound`] for a command to an order that does not
    /// exist (`InvalidTransition { from: New, .. }`), and
    /// [`ErrorKind::InvalidInput`] for everything else.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OrderError::AlreadyExists { .. } => ErrorKind::Conflict,
            OrderError::InvalidTransition {
                from: OrderStatus::New, ..
            } => ErrorKind::NotFound,
            OrderError::InvalidTransition { .. } => ErrorKind::Conflict,
            OrderError::PaymentMismatch { .. }
            | OrderError::InvalidOrderId { .. }
            | OrderError::EmptyCustomer
            | OrderError::NoLines
            | OrderError::TooManyLines { .. }
            | OrderError::ZeroQuantity { .. }
            | OrderError::InvalidSku { .. }
            | OrderError::DuplicateSku { .. }
            | OrderError::ServiceOnly { .. }
            | OrderError::TotalOverflow => ErrorKind::InvalidInput,
        }
    }
}

impl Classify for OrderError {
    fn kind(&self) -> ErrorKind {
        OrderError::kind(self)
    }
}

/// An order: the fold of its stream `order-{id}`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Order {
    id: String,
    customer: String,
    lines: Vec<OrderLine>,
    total_cents: u64,
    status: OrderStatus,
    paid_cents: u64,
    tracking: Option<String>,
    cancel_reason: Option<String>,
}

impl Order {
    /// The order's id (empty before it is placed).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Who placed it.
    pub fn customer(&self) -> &str {
        &self.customer
    }
    /// What was ordered.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }
    /// The total, in cents.
    pub fn total_cents(&self) -> u64 {
        self.total_cents
    }
    /// Where the order is in its life.
    pub fn status(&self) -> OrderStatus {
        self.status
    }
    /// What was paid, in cents.
    pub fn paid_cents(&self) -> u64 {
        self.paid_cents
    }
    /// The carrier's tracking reference, once shipped.
    pub fn tracking(&self) -> Option<&str> {
        self.tracking.as_deref()
    }
    /// Why it was cancelled, if it was and a reason was given.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }
    /// The commands the order accepts now (what a conflict answer lists).
    pub fn allowed_commands(&self) -> &'static [OrderCommandKind] {
        self.status.allowed_commands()
    }

    fn refuse(&self, command: OrderCommandKind) -> OrderError {
        OrderError::InvalidTransition {
            from: self.status,
            command,
        }
    }
}

/// Checks the lines of a new order and returns its total.
fn validate_place(order_id: &str, customer: &str, lines: &[OrderLine]) -> Result<u64, OrderError> {
    if let Err(reason) = crate::domain::validate_id(order_id, "order") {
        return Err(OrderError::InvalidOrderId {
            order_id: order_id.to_string(),
            reason,
        });
    }
    if customer.trim().is_empty() {
        return Err(OrderError::EmptyCustomer);
    }
    if lines.is_empty() {
        return Err(OrderError::NoLines);
    }
    if lines.len() > MAX_ORDER_LINES {
        return Err(OrderError::TooManyLines {
            count: lines.len(),
            max: MAX_ORDER_LINES,
        });
    }
    let mut seen = HashSet::with_capacity(lines.len());
    let mut total: u64 = 0;
    for line in lines {
        if let Err(reason) = crate::domain::validate_id(&line.sku, "stock") {
            return Err(OrderError::InvalidSku {
                sku: line.sku.clone(),
                reason,
            });
        }
        if !seen.insert(line.sku.as_str()) {
            return Err(OrderError::DuplicateSku { sku: line.sku.clone() });
        }
        if line.quantity == 0 {
            return Err(OrderError::ZeroQuantity { sku: line.sku.clone() });
        }
        total = u64::from(line.quantity)
            .checked_mul(line.unit_price_cents)
            .and_then(|t| t.checked_add(total))
            .ok_or(OrderError::TotalOverflow)?;
    }
    Ok(total)
}

impl Aggregate for Order {
    const KIND: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let kind = command.kind();
        if kind == OrderCommandKind::Place && self.status != OrderStatus::New {
            return Err(OrderError::AlreadyExists {
                order_id: self.id.clone(),
                status: self.status,
            });
        }
        if !self.allowed_commands().contains(&kind) {
            return Err(self.refuse(kind));
        }
        let event = match command {
            OrderCommand::Place {
                order_id,
                customer,
                lines,
            } => {
                let total_cents = validate_place(order_id, customer, lines)?;
                OrderEvent::OrderPlaced {
                    order_id: order_id.clone(),
                    customer: customer.clone(),
                    lines: lines.clone(),
                    total_cents,
                }
            }
            OrderCommand::Pay { amount_cents } => {
                if *amount_cents != self.total_cents {
                    return Err(OrderError::PaymentMismatch {
                        total_cents: self.total_cents,
                        amount_cents: *amount_cents,
                    });
                }
                OrderEvent::OrderPaid {
                    amount_cents: *amount_cents,
                }
            }
            OrderCommand::Ship { tracking } => OrderEvent::OrderShipped {
                tracking: tracking.clone(),
            },
            OrderCommand::Deliver => OrderEvent::OrderDelivered,
            OrderCommand::Cancel { reason } => OrderEvent::OrderCancelled { reason: reason.clone() },
        };
        Ok(vec![event])
    }

    fn command_id(command: &OrderCommand) -> Option<&str> {
        match command {
            OrderCommand::Place { order_id, .. } => Some(order_id),
            _ => None,
        }
    }

    /// Place, ship and cancel move stock: they run only in the order
    /// service, with the stock items' events in the same atomic append.
    fn check_direct(command: &OrderCommand) -> Result<(), OrderError> {
        match command {
            OrderCommand::Place { .. } | OrderCommand::Ship { .. } | OrderCommand::Cancel { .. } => {
                Err(OrderError::ServiceOnly {
                    command: command.kind(),
                })
            }
            _ => Ok(()),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced {
                order_id,
                customer,
                lines,
                total_cents,
            } => {
                self.id.clone_from(order_id);
                self.customer.clone_from(customer);
                self.lines.clone_from(lines);
                self.total_cents = *total_cents;
                self.status = OrderStatus::Placed;
            }
            OrderEvent::OrderPaid { amount_cents } => {
                self.paid_cents = self.paid_cents.saturating_add(*amount_cents);
                self.status = OrderStatus::Paid;
            }
            OrderEvent::OrderShipped { tracking } => {
                self.tracking.clone_from(tracking);
                self.status = OrderStatus::Shipped;
            }
            OrderEvent::OrderDelivered => self.status = OrderStatus::Delivered,
            OrderEvent::OrderCancelled { reason } => {
                self.cancel_reason.clone_from(reason);
                self.status = OrderStatus::Cancelled;
            }
        }
    }
}

impl Snapshottable for Order {
    const SNAPSHOT_VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{given, given_no_events};

    fn line(sku: &str, quantity: u32, unit_price_cents: u64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    fn place(lines: Vec<OrderLine>) -> OrderCommand {
        OrderCommand::Place {
            order_id: "o-1".into(),
            customer: "ada".into(),
            lines,
        }
    }

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced {
            order_id: "o-1".into(),
            customer: "ada".into(),
            lines: vec![line("tea", 2, 250), line("cup", 1, 1000)],
            total_cents: 1500,
        }
    }

    /// The history that leads to each status.
    fn history(status: OrderStatus) -> Vec<OrderEvent> {
        let paid = OrderEvent::OrderPaid { amount_cents: 1500 };
        let shipped = OrderEvent::OrderShipped {
            tracking: Some("trk-1".into()),
        };
        let cancelled = OrderEvent::OrderCancelled {
            reason: Some("changed mind".into()),
        };
        match status {
            OrderStatus::New => vec![],
            OrderStatus::Placed => vec![placed()],
            OrderStatus::Paid => vec![placed(), paid],
            OrderStatus::Shipped => vec![placed(), paid, shipped],
            OrderStatus::Delivered => vec![placed(), paid, shipped, OrderEvent::OrderDelivered],
            OrderStatus::Cancelled => vec![placed(), cancelled],
        }
    }

    /// A valid command of each kind, and the event it decides when allowed.
    fn command(kind: OrderCommandKind) -> (OrderCommand, OrderEvent) {
        match kind {
            OrderCommandKind::Place => (place(vec![line("tea", 2, 250), line("cup", 1, 1000)]), placed()),
            OrderCommandKind::Pay => (
                OrderCommand::Pay { amount_cents: 1500 },
                OrderEvent::OrderPaid { amount_cents: 1500 },
            ),
            OrderCommandKind::Ship => (
                OrderCommand::Ship {
                    tracking: Some("trk-9".into()),
                },
                OrderEvent::OrderShipped {
                    tracking: Some("trk-9".into()),
                },
            ),
            OrderCommandKind::Deliver => (OrderCommand::Deliver, OrderEvent::OrderDelivered),
            OrderCommandKind::Cancel => (
                OrderCommand::Cancel { reason: None },
                OrderEvent::OrderCancelled { reason: None },
            ),
        }
    }

    /// The state machine of DESIGN.md, written out independently of the code.
    const TRANSITIONS: [(OrderStatus, OrderCommandKind, OrderStatus); 6] = [
        (OrderStatus::New, OrderCommandKind::Place, OrderStatus::Placed),
        (OrderStatus::Placed, OrderCommandKind::Pay, OrderStatus::Paid),
        (OrderStatus::Placed, OrderCommandKind::Cancel, OrderStatus::Cancelled),
        (OrderStatus::Paid, OrderCommandKind::Ship, OrderStatus::Shipped),
        (OrderStatus::Paid, OrderCommandKind::Cancel, OrderStatus::Cancelled),
        (OrderStatus::Shipped, OrderCommandKind::Deliver, OrderStatus::Delivered),
    ];

    #[test]
    fn every_status_and_command() {
        let mut cases = 0;
        for from in OrderStatus::ALL {
            let before = given::<Order>(history(from));
            assert_eq!(before.state().status(), from, "the history leads to {from}");
            for kind in OrderCommandKind::ALL {
                let (cmd, event) = command(kind);
                let transition = TRANSITIONS.iter().find(|(f, k, _)| *f == from && *k == kind);
                let when = given::<Order>(history(from)).when(cmd.clone());
                match transition {
                    Some((_, _, to)) => {
                        given::<Order>(history(from)).when(cmd).then_expect([event]);
                        when.then_assert(|_, after| assert_eq!(after.status(), *to, "{from} --{kind}-->"));
                    }
                    None if kind == OrderCommandKind::Place => when.then_error(OrderError::AlreadyExists {
                        order_id: "o-1".into(),
                        status: from,
                    }),
                    None => when.then_error(OrderError::InvalidTransition { from, command: kind }),
                }
                cases += 1;
            }
        }
        assert_eq!(cases, 30);
    }

    #[test]
    fn allowed_commands_list_exactly_the_transitions() {
        for from in OrderStatus::ALL {
            let mut expected: Vec<_> = TRANSITIONS
                .iter()
                .filter(|(f, _, _)| *f == from)
                .map(|(_, k, _)| *k)
                .collect();
            expected.sort();
            let order = given::<Order>(history(from)).state().clone();
            let mut allowed = order.allowed_commands().to_vec();
            allowed.sort();
            assert_eq!(allowed, expected, "allowed commands when {from}");
        }
    }

    #[test]
    fn place_computes_the_total() {
        given_no_events::<Order>()
            .when(place(vec![line("tea", 3, 199), line("cup", 2, 1000)]))
            .then_expect([OrderEvent::OrderPlaced {
                order_id: "o-1".into(),
                customer: "ada".into(),
                lines: vec![line("tea", 3, 199), line("cup", 2, 1000)],
                total_cents: 2597,
            }]);
    }

    #[test]
    fn place_validates_its_input() {
        let refuse = |cmd: OrderCommand, error: OrderError| given_no_events::<Order>().when(cmd).then_error(error);
        refuse(place(vec![]), OrderError::NoLines);
        refuse(
            place(vec![line("tea", 0, 100)]),
            OrderError::ZeroQuantity { sku: "tea".into() },
        );
        refuse(
            place(vec![line("tea", 1, 100), line("tea", 2, 100)]),
            OrderError::DuplicateSku { sku: "tea".into() },
        );
        refuse(
            place(vec![line("", 1, 100)]),
            OrderError::InvalidSku {
                sku: "".into(),
                reason: "must not be empty",
            },
        );
        refuse(
            place(vec![line("te\na", 1, 100)]),
            OrderError::InvalidSku {
                sku: "te\na".into(),
                reason: "must not contain control characters",
            },
        );
        let long = "s".repeat(251);
        refuse(
            place(vec![line(&long, 1, 100)]),
            OrderError::InvalidSku {
                sku: long.clone(),
                reason: "too long to name a stream",
            },
        );
        refuse(place(vec![line("tea", u32::MAX, u64::MAX)]), OrderError::TotalOverflow);
        refuse(
            place(vec![line("a", 1, u64::MAX), line("b", 1, 1)]),
            OrderError::TotalOverflow,
        );
        let many: Vec<_> = (0..=MAX_ORDER_LINES).map(|i| line(&format!("s{i}"), 1, 1)).collect();
        refuse(
            place(many),
            OrderError::TooManyLines {
                count: MAX_ORDER_LINES + 1,
                max: MAX_ORDER_LINES,
            },
        );
        refuse(
            OrderCommand::Place {
                order_id: "o-1".into(),
                customer: "  ".into(),
                lines: vec![line("tea", 1, 1)],
            },
            OrderError::EmptyCustomer,
        );
        refuse(
            OrderCommand::Place {
                order_id: "".into(),
                customer: "ada".into(),
                lines: vec![line("tea", 1, 1)],
            },
            OrderError::InvalidOrderId {
                order_id: "".into(),
                reason: "must not be empty",
            },
        );
    }

    #[test]
    fn a_free_order_is_paid_with_zero() {
        given_no_events::<Order>()
            .when(place(vec![line("sample", 1, 0)]))
            .then_assert(|r, after| {
                assert!(r.is_ok());
                assert_eq!(after.total_cents(), 0);
            });
        let free = OrderEvent::OrderPlaced {
            order_id: "o-1".into(),
            customer: "ada".into(),
            lines: vec![line("sample", 1, 0)],
            total_cents: 0,
        };
        given::<Order>([free])
            .when(OrderCommand::Pay { amount_cents: 0 })
            .then_expect([OrderEvent::OrderPaid { amount_cents: 0 }]);
    }

    #[test]
    fn payment_must_match_the_total() {
        for amount_cents in [0, 1499, 1501, u64::MAX] {
            given::<Order>(history(OrderStatus::Placed))
                .when(OrderCommand::Pay { amount_cents })
                .then_error(OrderError::PaymentMismatch {
                    total_cents: 1500,
                    amount_cents,
                });
        }
        assert_eq!(
            OrderError::PaymentMismatch {
                total_cents: 1,
                amount_cents: 2
            }
            .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn the_state_records_what_happened() {
        given::<Order>(history(OrderStatus::Shipped))
            .when(OrderCommand::Deliver)
            .then_assert(|_, after| {
                assert_eq!(after.id(), "o-1");
                assert_eq!(after.customer(), "ada");
                assert_eq!(after.lines().len(), 2);
                assert_eq!(after.paid_cents(), 1500);
                assert_eq!(after.tracking(), Some("trk-1"));
                assert_eq!(after.status(), OrderStatus::Delivered);
            });
        given::<Order>(history(OrderStatus::Paid))
            .when(OrderCommand::Cancel {
                reason: Some("late".into()),
            })
            .then_assert(|_, after| assert_eq!(after.cancel_reason(), Some("late")));
    }

    #[test]
    fn kinds_of_refusals() {
        let dup = OrderError::AlreadyExists {
            order_id: "o".into(),
            status: OrderStatus::Paid,
        };
        assert_eq!(dup.kind(), ErrorKind::Conflict);
        let invalid = OrderError::InvalidTransition {
            from: OrderStatus::Placed,
            command: OrderCommandKind::Ship,
        };
        assert_eq!(invalid.kind(), ErrorKind::Conflict);
        let missing = OrderError::InvalidTransition {
            from: OrderStatus::New,
            command: OrderCommandKind::Pay,
        };
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert_eq!(OrderError::NoLines.kind(), ErrorKind::InvalidInput);
    }
}
