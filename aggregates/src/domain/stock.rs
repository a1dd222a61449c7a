//! Stock items, one stream per SKU (`stock-{sku}`): on hand ≥ 0, reserved ≤
//! on hand ≤ [`MAX_ON_HAND`], at most [`MAX_QUANTITY`] units per receive or
//! reserve, one reservation per order id.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use strata_store::{Classify, ErrorKind};

use crate::aggregate::{Aggregate, Snapshottable};
use crate::codec::DomainEvent;

/// The most units one command may receive or reserve (one billion). A
/// business limit: a larger figure is almost certainly a typing error, and
/// with [`MAX_ON_HAND`] it keeps every stock figure far from overflow.
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// The most units a stock item may hold on hand (10^15), by receiving or by
/// a count. Reserved ≤ on hand, so every figure of a stock item fits an
/// `i64` (read models, SQL `BIGINT`) and is exact as a JSON number even in
/// JavaScript (below 2^53).
pub const MAX_ON_HAND: u64 = 1_000_000_000_000_000;

/// The events of a stock item stream. Variants are only ever added at the
/// end (bincode identifies them by index).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StockEvent {
    /// The SKU was registered, with nothing on hand.
    StockItemRegistered {
        /// The SKU (the stream is `stock-{sku}`).
        sku: String,
        /// A display name.
        name: String,
    },
    /// Units arrived.
    StockReceived {
        /// How many (at least 1).
        quantity: u64,
    },
    /// Units were reserved for an order.
    StockReserved {
        /// The order.
        order_id: String,
        /// How many.
        quantity: u64,
    },
    /// An order's reservation was released (the order was cancelled).
    StockReleased {
        /// The order.
        order_id: String,
        /// How many units were released.
        quantity: u64,
    },
    /// An order's reservation left the warehouse (the order shipped): on hand
    /// and reserved both drop by the quantity.
    StockCommitted {
        /// The order.
        order_id: String,
        /// How many units.
        quantity: u64,
    },
    /// A count found a different number on hand.
    StockAdjusted {
        /// The number counted, now on hand.
        counted: u64,
        /// Counted minus the previous on-hand figure.
        delta: i64,
    },
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::StockItemRegistered { .. } => "StockItemRegistered",
            StockEvent::StockReceived { .. } => "StockReceived",
            StockEvent::StockReserved { .. } => "StockReserved",
            StockEvent::StockReleased { .. } => "StockReleased",
            StockEvent::StockCommitted { .. } => "StockCommitted",
            StockEvent::StockAdjusted { .. } => "StockAdjusted",
        }
    }
}

/// What can be asked of a stock item.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StockCommand {
    /// Register the SKU (its stream must have no events).
    Register {
        /// The SKU; must be the id the command is executed on (the repository
        /// refuses another with `RepositoryError::IdMismatch`).
        sku: String,
        /// A display name (not empty).
        name: String,
    },
    /// Units arrived.
    Receive {
        /// How many (at least 1).
        quantity: u64,
    },
    /// Reserve units for an order: at most what is available, once per order.
    Reserve {
        /// The order.
        order_id: String,
        /// How many (at least 1).
        quantity: u64,
    },
    /// Release an order's reservation (the order was cancelled).
    Release {
        /// The order.
        order_id: String,
    },
    /// Commit an order's reservation (the order shipped): the units leave.
    Commit {
        /// The order.
        order_id: String,
    },
    /// Set on hand to what a count found.
    Adjust {
        /// The units counted.
        counted: u64,
    },
}

impl StockCommand {
    /// Which kind of command this is.
    pub fn kind(&self) -> StockCommandKind {
        match self {
            StockCommand::Register { .. } => StockCommandKind::Register,
            StockCommand::Receive { .. } => StockCommandKind::Receive,
            StockCommand::Reserve { .. } => StockCommandKind::Reserve,
            StockCommand::Release { .. } => StockCommandKind::Release,
            StockCommand::Commit { .. } => StockCommandKind::Commit,
            StockCommand::Adjust { .. } => StockCommandKind::Adjust,
        }
    }
}

/// The kinds of [`StockCommand`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockCommandKind {
    /// [`StockCommand::Register`].
    Register,
    /// [`StockCommand::Receive`].
    Receive,
    /// [`StockCommand::Reserve`].
    Reserve,
    /// [`StockCommand::Release`].
    Release,
    /// [`StockCommand::Commit`].
    Commit,
    /// [`StockCommand::Adjust`].
    Adjust,
}

impl StockCommandKind {
    /// The snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            StockCommandKind::Register => "register",
            StockCommandKind::Receive => "receive",
            StockCommandKind::Reserve => "reserve",
            StockCommandKind::Release => "release",
            StockCommandKind::Commit => "commit",
            StockCommandKind::Adjust => "adjust",
        }
    }
}

impl fmt::Display for StockCommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stock item refused a command. Nothing was appended.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StockError {
    /// `Register` for a SKU that is registered.
    ///
    /// Handling: a duplicate create. Kind: [`ErrorKind::Conflict`].
    #[error("SKU {sku} is already registered")]
    AlreadyRegistered {
        /// The SKU.
        sku: String,
    },
    /// A command other than `Register` for a SKU that is not registered.
    ///
    /// Handling: an unknown SKU. Kind: [`ErrorKind::NotFound`] (when an
    /// order names the SKU, the order service reports
    /// `OrderServiceError::UnknownSku`, invalid input of the order).
    #[error("cannot {command}: the SKU is not registered")]
    NotRegistered {
        /// The refused command.
        command: StockCommandKind,
    },
    /// A SKU that is empty or cannot name a stream.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid SKU {sku:?}: {reason}")]
    InvalidSku {
        /// The SKU given.
        sku: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An order id that is empty or cannot name a stream.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid order id {order_id:?}: {reason}")]
    InvalidOrderId {
        /// The id given.
        order_id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An empty display name.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("the name must not be empty")]
    EmptyName,
    /// A receive or reserve of zero units.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("cannot {command} zero units")]
    ZeroQuantity {
        /// The refused command.
        command: StockCommandKind,
    },
    /// A quantity that would overflow the counters. Since the limits
    /// ([`MAX_QUANTITY`], [`MAX_ON_HAND`]) only an item whose history was
    /// written before them can get here.
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("the quantity overflows the stock counters")]
    Overflow,
    /// `Reserve`, `Release` or `Commit` sent to the stock item on its own
    /// (through `Repository::execute`). They belong to an order's life: only
    /// the order service runs them, in the same atomic append as the order's
    /// event, so that no reservation is stranded, doubled or lost.
    ///
    /// Handling: bad input; place, cancel or ship the order. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("cannot {command} stock directly: place, cancel or ship the order through the order service")]
    ServiceOnly {
        /// The refused command.
        command: StockCommandKind,
    },
    /// A receive or reserve of more than [`MAX_QUANTITY`] units at once.
    ///
    /// Handling: bad input; split it, or check the figure. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("cannot {command} {quantity} units at once: at most {max}")]
    QuantityTooLarge {
        /// The refused command.
        command: StockCommandKind,
        /// The units asked for.
        quantity: u64,
        /// The limit, [`MAX_QUANTITY`].
        max: u64,
    },
    /// A receive or count that would take on hand above [`MAX_ON_HAND`].
    ///
    /// Handling: bad input. Kind: [`ErrorKind::InvalidInput`].
    #[error("on hand would be {on_hand} units, above the limit of {max}")]
    OnHandLimit {
        /// The on-hand figure the command would reach.
        on_hand: u64,
        /// The limit, [`MAX_ON_HAND`].
        max: u64,
    },
    /// More units requested than are available (on hand minus reserved).
    ///
    /// Handling: a state conflict; order less or wait for stock. Kind:
    /// [`ErrorKind::Conflict`].
    #[error("insufficient stock: {requested} requested, {available} available")]
    InsufficientStock {
        /// Units requested.
        requested: u64,
        /// Units available.
        available: u64,
    },
    /// The order already holds a reservation of another quantity. (The same
    /// quantity again is accepted and changes nothing.)
    ///
    /// Handling: a state conflict. Kind: [`ErrorKind::Conflict`].
    #[error("order {order_id} already reserved {reserved} units")]
    AlreadyReserved {
        /// The order.
        order_id: String,
        /// The units it holds.
        reserved: u64,
    },
    /// Release or commit for an order that holds no reservation here.
    ///
    /// Handling: a state conflict. Kind: [`ErrorKind::Conflict`].
    #[error("order {order_id} holds no reservation")]
    NoReservation {
        /// The order.
        order_id: String,
    },
    /// A count below the units reserved: on hand may not drop below reserved.
    ///
    /// Handling: a state conflict; release or cancel reservations first.
    /// Kind: [`ErrorKind::Conflict`].
    #[error("counted {counted} units, below the {reserved} reserved")]
    BelowReserved {
        /// The count.
        counted: u64,
        /// Units reserved.
        reserved: u64,
    },
}

impl StockError {
    /// What kind of refusal this is: [`ErrorKind::NotFound`] for a SKU
    /// that is not registered, [`ErrorKind::Conflict`] for a duplicate
    /// registration and the rules of the item's current state (stock,
    /// reservations), [`ErrorKind::InvalidInput`] for everything else.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StockError::NotRegistered { .. } => ErrorKind::NotFound,
            StockError::AlreadyRegistered { .. }
            | StockError::InsufficientStock { .. }
            | StockError::AlreadyReserved { .. }
            | StockError::NoReservation { .. }
            | StockError::BelowReserved { .. } => ErrorKind::Conflict,
            StockError::InvalidSku { .. }
            | StockError::InvalidOrderId { .. }
            | StockError::EmptyName
            | StockError::ZeroQuantity { .. }
            | StockError::Overflow
            | StockError::ServiceOnly { .. }
            | StockError::QuantityTooLarge { .. }
            | StockError::OnHandLimit { .. } => ErrorKind::InvalidInput,
        }
    }
}

impl Classify for StockError {
    fn kind(&self) -> ErrorKind {
        StockError::kind(self)
    }
}

/// A stock item: the fold of its stream `stock-{sku}`.
///
/// Invariants kept by `handle`: reserved ≤ on hand ≤ [`MAX_ON_HAND`] (so
/// available = on hand − reserved ≥ 0 and every figure fits an `i64`), and
/// reserved is the sum of the reservations, at most one per order id.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct StockItem {
    sku: String,
    name: String,
    registered: bool,
    on_hand: u64,
    reserved: u64,
    reservations: BTreeMap<String, u64>,
}

impl StockItem {
    /// The SKU (empty before registration).
    pub fn sku(&self) -> &str {
        &self.sku
    }
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the SKU is registered.
    pub fn is_registered(&self) -> bool {
        self.registered
    }
    /// Units in the warehouse.
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }
    /// Units reserved for orders not yet shipped or cancelled.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }
    /// Units that can be reserved: on hand minus reserved.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
    /// The units reserved for `order_id`, if any.
    pub fn reservation(&self, order_id: &str) -> Option<u64> {
        self.reservations.get(order_id).copied()
    }
    /// Every open reservation, by order id.
    pub fn reservations(&self) -> &BTreeMap<String, u64> {
        &self.reservations
    }
    /// The commands that can succeed in the current state (what a conflict
    /// answer lists).
    pub fn allowed_commands(&self) -> Vec<StockCommandKind> {
        use StockCommandKind::*;
        if !self.registered {
            return vec![Register];
        }
        let mut allowed = vec![Receive];
        if self.available() > 0 {
            allowed.push(Reserve);
        }
        if !self.reservations.is_empty() {
            allowed.extend([Release, Commit]);
        }
        allowed.push(Adjust);
        allowed
    }

    fn reservation_of(&self, order_id: &str) -> Result<u64, StockError> {
        self.reservation(order_id).ok_or_else(|| StockError::NoReservation {
            order_id: order_id.to_string(),
        })
    }
}

/// Refuses a quantity above [`MAX_QUANTITY`].
fn check_quantity(command: StockCommandKind, quantity: u64) -> Result<(), StockError> {
    if quantity > MAX_QUANTITY {
        return Err(StockError::QuantityTooLarge {
            command,
            quantity,
            max: MAX_QUANTITY,
        });
    }
    Ok(())
}

/// Refuses an on-hand figure above [`MAX_ON_HAND`].
fn check_on_hand(on_hand: u64) -> Result<(), StockError> {
    if on_hand > MAX_ON_HAND {
        return Err(StockError::OnHandLimit {
            on_hand,
            max: MAX_ON_HAND,
        });
    }
    Ok(())
}

impl Aggregate for StockItem {
    const KIND: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

    fn handle(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockError> {
        match command {
            StockCommand::Register { sku, name } => {
                if self.registered {
                    return Err(StockError::AlreadyRegistered { sku: self.sku.clone() });
                }
                crate::domain::validate_id(sku, StockItem::KIND).map_err(|reason| StockError::InvalidSku {
                    sku: sku.clone(),
                    reason,
                })?;
                if name.trim().is_empty() {
                    return Err(StockError::EmptyName);
                }
                return Ok(vec![StockEvent::StockItemRegistered {
                    sku: sku.clone(),
                    name: name.clone(),
                }]);
            }
            other if !self.registered => return Err(StockError::NotRegistered { command: other.kind() }),
            _ => {}
        }
        let event = match command {
            StockCommand::Register { .. } => unreachable!("handled above"),
            StockCommand::Receive { quantity } => {
                if *quantity == 0 {
                    return Err(StockError::ZeroQuantity {
                        command: StockCommandKind::Receive,
                    });
                }
                check_quantity(StockCommandKind::Receive, *quantity)?;
                let on_hand = self.on_hand.checked_add(*quantity).ok_or(StockError::Overflow)?;
                check_on_hand(on_hand)?;
                StockEvent::StockReceived { quantity: *quantity }
            }
            StockCommand::Reserve { order_id, quantity } => {
                crate::domain::validate_id(order_id, "order").map_err(|reason| StockError::InvalidOrderId {
                    order_id: order_id.clone(),
                    reason,
                })?;
                if *quantity == 0 {
                    return Err(StockError::ZeroQuantity {
                        command: StockCommandKind::Reserve,
                    });
                }
                check_quantity(StockCommandKind::Reserve, *quantity)?;
                match self.reservation(order_id) {
                    Some(held) if held == *quantity => return Ok(Vec::new()),
                    Some(held) => {
                        return Err(StockError::AlreadyReserved {
                            order_id: order_id.clone(),
                            reserved: held,
                        });
                    }
                    None => {}
                }
                if *quantity > self.available() {
                    return Err(StockError::InsufficientStock {
                        requested: *quantity,
                        available: self.available(),
                    });
                }
                StockEvent::StockReserved {
                    order_id: order_id.clone(),
                    quantity: *quantity,
                }
            }
            StockCommand::Release { order_id } => StockEvent::StockReleased {
                order_id: order_id.clone(),
                quantity: self.reservation_of(order_id)?,
            },
            StockCommand::Commit { order_id } => StockEvent::StockCommitted {
                order_id: order_id.clone(),
                quantity: self.reservation_of(order_id)?,
            },
            StockCommand::Adjust { counted } => {
                check_on_hand(*counted)?;
                if *counted < self.reserved {
                    return Err(StockError::BelowReserved {
                        counted: *counted,
                        reserved: self.reserved,
                    });
                }
                let delta =
                    i64::try_from(i128::from(*counted) - i128::from(self.on_hand)).map_err(|_| StockError::Overflow)?;
                StockEvent::StockAdjusted {
                    counted: *counted,
                    delta,
                }
            }
        };
        Ok(vec![event])
    }

    fn command_id(command: &StockCommand) -> Option<&str> {
        match command {
            StockCommand::Register { sku, .. } => Some(sku),
            _ => None,
        }
    }

    /// Reserve, release and commit run only in the order service, with
    /// the order's event in the same atomic append.
    fn check_direct(command: &StockCommand) -> Result<(), StockError> {
        match command {
            StockCommand::Reserve { .. } | StockCommand::Release { .. } | StockCommand::Commit { .. } => {
                Err(StockError::ServiceOnly {
                    command: command.kind(),
                })
            }
            _ => Ok(()),
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::StockItemRegistered { sku, name } => {
                self.sku.clone_from(sku);
                self.name.clone_from(name);
                self.registered = true;
            }
            StockEvent::StockReceived { quantity } => self.on_hand = self.on_hand.saturating_add(*quantity),
            StockEvent::StockReserved { order_id, quantity } => {
                let held = self.reservations.entry(order_id.clone()).or_default();
                *held = held.saturating_add(*quantity);
                self.reserved = self.reserved.saturating_add(*quantity);
            }
            StockEvent::StockReleased { order_id, quantity } => {
                self.reservations.remove(order_id);
                self.reserved = self.reserved.saturating_sub(*quantity);
            }
            StockEvent::StockCommitted { order_id, quantity } => {
                self.reservations.remove(order_id);
                self.reserved = self.reserved.saturating_sub(*quantity);
                self.on_hand = self.on_hand.saturating_sub(*quantity);
            }
            StockEvent::StockAdjusted { counted, .. } => self.on_hand = *counted,
        }
    }
}

impl Snapshottable for StockItem {
    const SNAPSHOT_VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{given, given_no_events};

    fn registered() -> StockEvent {
        StockEvent::StockItemRegistered {
            sku: "tea".into(),
            name: "Green tea".into(),
        }
    }

    fn received(quantity: u64) -> StockEvent {
        StockEvent::StockReceived { quantity }
    }

    fn reserved(order_id: &str, quantity: u64) -> StockEvent {
        StockEvent::StockReserved {
            order_id: order_id.into(),
            quantity,
        }
    }

    fn reserve(order_id: &str, quantity: u64) -> StockCommand {
        StockCommand::Reserve {
            order_id: order_id.into(),
            quantity,
        }
    }

    /// 10 on hand, 3 reserved by o-1: 7 available.
    fn stocked() -> Vec<StockEvent> {
        vec![registered(), received(10), reserved("o-1", 3)]
    }

    #[test]
    fn register() {
        given_no_events::<StockItem>()
            .when(StockCommand::Register {
                sku: "tea".into(),
                name: "Green tea".into(),
            })
            .then_expect([registered()]);
        given::<StockItem>([registered()])
            .when(StockCommand::Register {
                sku: "tea".into(),
                name: "Again".into(),
            })
            .then_error(StockError::AlreadyRegistered { sku: "tea".into() });
        given_no_events::<StockItem>()
            .when(StockCommand::Register {
                sku: "tea".into(),
                name: " ".into(),
            })
            .then_error(StockError::EmptyName);
        given_no_events::<StockItem>()
            .when(StockCommand::Register {
                sku: "".into(),
                name: "x".into(),
            })
            .then_error(StockError::InvalidSku {
                sku: "".into(),
                reason: "must not be empty",
            });
    }

    #[test]
    fn every_command_but_register_needs_a_registered_sku() {
        let commands = [
            StockCommand::Receive { quantity: 1 },
            reserve("o-1", 1),
            StockCommand::Release { order_id: "o-1".into() },
            StockCommand::Commit { order_id: "o-1".into() },
            StockCommand::Adjust { counted: 1 },
        ];
        for command in commands {
            let kind = command.kind();
            given_no_events::<StockItem>()
                .when(command)
                .then_error(StockError::NotRegistered { command: kind });
        }
        assert_eq!(
            StockError::NotRegistered {
                command: StockCommandKind::Receive
            }
            .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn receive() {
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 5 })
            .then_expect([received(5)]);
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 0 })
            .then_error(StockError::ZeroQuantity {
                command: StockCommandKind::Receive,
            });
        given::<StockItem>([registered(), received(u64::MAX)])
            .when(StockCommand::Receive { quantity: 1 })
            .then_error(StockError::Overflow);
    }

    #[test]
    fn quantities_are_capped_at_the_business_limits() {
        let too_many = MAX_QUANTITY + 1;
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: MAX_QUANTITY })
            .then_expect([received(MAX_QUANTITY)]);
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: too_many })
            .then_error(StockError::QuantityTooLarge {
                command: StockCommandKind::Receive,
                quantity: too_many,
                max: MAX_QUANTITY,
            });
        given::<StockItem>([registered(), received(MAX_QUANTITY)])
            .when(reserve("o-1", too_many))
            .then_error(StockError::QuantityTooLarge {
                command: StockCommandKind::Reserve,
                quantity: too_many,
                max: MAX_QUANTITY,
            });
        // On hand never passes MAX_ON_HAND, by receiving or by counting.
        given::<StockItem>([
            registered(),
            StockEvent::StockAdjusted {
                counted: MAX_ON_HAND,
                delta: MAX_ON_HAND as i64,
            },
        ])
        .when(StockCommand::Receive { quantity: 1 })
        .then_error(StockError::OnHandLimit {
            on_hand: MAX_ON_HAND + 1,
            max: MAX_ON_HAND,
        });
        given::<StockItem>([registered()])
            .when(StockCommand::Adjust {
                counted: MAX_ON_HAND + 1,
            })
            .then_error(StockError::OnHandLimit {
                on_hand: MAX_ON_HAND + 1,
                max: MAX_ON_HAND,
            });
        given::<StockItem>([registered()])
            .when(StockCommand::Adjust { counted: MAX_ON_HAND })
            .then_expect([StockEvent::StockAdjusted {
                counted: MAX_ON_HAND,
                delta: MAX_ON_HAND as i64,
            }]);
        let refusal = StockError::QuantityTooLarge {
            command: StockCommandKind::Receive,
            quantity: too_many,
            max: MAX_QUANTITY,
        };
        assert_eq!(refusal.kind(), ErrorKind::InvalidInput);
        assert!(MAX_ON_HAND <= i64::MAX as u64, "every figure fits an i64 read model");
    }

    #[test]
    fn reserve_up_to_what_is_available() {
        given::<StockItem>(stocked())
            .when(reserve("o-2", 7))
            .then_expect([reserved("o-2", 7)]);
        given::<StockItem>(stocked())
            .when(reserve("o-2", 8))
            .then_error(StockError::InsufficientStock {
                requested: 8,
                available: 7,
            });
        given::<StockItem>([registered()])
            .when(reserve("o-2", 1))
            .then_error(StockError::InsufficientStock {
                requested: 1,
                available: 0,
            });
        given::<StockItem>(stocked())
            .when(reserve("o-2", 0))
            .then_error(StockError::ZeroQuantity {
                command: StockCommandKind::Reserve,
            });
        given::<StockItem>(stocked())
            .when(reserve("", 1))
            .then_error(StockError::InvalidOrderId {
                order_id: "".into(),
                reason: "must not be empty",
            });
    }

    #[test]
    fn a_reservation_per_order_is_applied_once() {
        // The same reservation again changes nothing (a safe retry)...
        given::<StockItem>(stocked()).when(reserve("o-1", 3)).then_expect([]);
        // ...another quantity for the same order is refused.
        given::<StockItem>(stocked())
            .when(reserve("o-1", 4))
            .then_error(StockError::AlreadyReserved {
                order_id: "o-1".into(),
                reserved: 3,
            });
    }

    #[test]
    fn release_returns_the_units() {
        given::<StockItem>(stocked())
            .when(StockCommand::Release { order_id: "o-1".into() })
            .then_assert(|r, after| {
                assert_eq!(
                    r.as_ref().unwrap(),
                    &vec![StockEvent::StockReleased {
                        order_id: "o-1".into(),
                        quantity: 3
                    }]
                );
                assert_eq!((after.on_hand(), after.reserved(), after.available()), (10, 0, 10));
                assert_eq!(after.reservation("o-1"), None);
            });
        given::<StockItem>(stocked())
            .when(StockCommand::Release { order_id: "o-9".into() })
            .then_error(StockError::NoReservation { order_id: "o-9".into() });
    }

    #[test]
    fn commit_takes_the_units_out() {
        given::<StockItem>(stocked())
            .when(StockCommand::Commit { order_id: "o-1".into() })
            .then_assert(|r, after| {
                assert_eq!(
                    r.as_ref().unwrap(),
                    &vec![StockEvent::StockCommitted {
                        order_id: "o-1".into(),
                        quantity: 3
                    }]
                );
                assert_eq!((after.on_hand(), after.reserved(), after.available()), (7, 0, 7));
            });
        let committed = StockEvent::StockCommitted {
            order_id: "o-1".into(),
            quantity: 3,
        };
        let mut shipped = stocked();
        shipped.push(committed);
        given::<StockItem>(shipped)
            .when(StockCommand::Commit { order_id: "o-1".into() })
            .then_error(StockError::NoReservation { order_id: "o-1".into() });
    }

    #[test]
    fn adjust_sets_on_hand_but_never_below_reserved() {
        given::<StockItem>(stocked())
            .when(StockCommand::Adjust { counted: 12 })
            .then_expect([StockEvent::StockAdjusted { counted: 12, delta: 2 }]);
        given::<StockItem>(stocked())
            .when(StockCommand::Adjust { counted: 3 })
            .then_expect([StockEvent::StockAdjusted { counted: 3, delta: -7 }]);
        given::<StockItem>(stocked())
            .when(StockCommand::Adjust { counted: 2 })
            .then_error(StockError::BelowReserved {
                counted: 2,
                reserved: 3,
            });
        given::<StockItem>([registered(), received(u64::MAX)])
            .when(StockCommand::Adjust { counted: 0 })
            .then_error(StockError::Overflow);
    }

    #[test]
    fn allowed_commands_follow_the_state() {
        use StockCommandKind::*;
        assert_eq!(
            given_no_events::<StockItem>().state().allowed_commands(),
            vec![Register]
        );
        assert_eq!(
            given::<StockItem>([registered()]).state().allowed_commands(),
            vec![Receive, Adjust]
        );
        assert_eq!(
            given::<StockItem>(stocked()).state().allowed_commands(),
            vec![Receive, Reserve, Release, Commit, Adjust]
        );
        let sold_out = vec![registered(), received(3), reserved("o-1", 3)];
        assert_eq!(
            given::<StockItem>(sold_out).state().allowed_commands(),
            vec![Receive, Release, Commit, Adjust]
        );
    }

    #[test]
    fn reserved_is_the_sum_of_the_reservations() {
        let history = vec![
            registered(),
            received(20),
            reserved("o-1", 3),
            reserved("o-2", 5),
            StockEvent::StockReleased {
                order_id: "o-1".into(),
                quantity: 3,
            },
            reserved("o-3", 4),
            StockEvent::StockCommitted {
                order_id: "o-2".into(),
                quantity: 5,
            },
        ];
        let item = given::<StockItem>(history).state().clone();
        assert_eq!(item.reserved(), item.reservations().values().sum::<u64>());
        assert_eq!((item.on_hand(), item.reserved(), item.available()), (15, 4, 11));
        assert_eq!(item.reservation("o-3"), Some(4));
    }
}
