//! Inbound connections still handshaking, counted per remote IP address:
//! one address may hold only a few of the node's pending slots, so a host
//! that opens connections and never finishes the handshake (reopening
//! each as the node closes it) cannot lock every honest peer out. The
//! per-IP limit of established connections applies only after the
//! handshake; this one covers the time before it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Handshakes from one IP address in progress, at most.
pub const MAX_PENDING_PER_IP: usize = 4;

/// The refusal of a pending connection.
#[derive(Debug, thiserror::Error)]
#[error("{0} has {MAX_PENDING_PER_IP} handshakes in progress already")]
pub struct TooManyPending(IpAddr);

/// The behaviour that counts and bounds handshakes per IP address.
#[derive(Debug, Default)]
pub struct PendingPerIp {
    pending: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

impl PendingPerIp {
    /// Handshakes in progress from `ip`.
    #[must_use]
    pub fn pending_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Admits a pending connection from `remote`, or refuses it.
    ///
    /// # Errors
    /// When its address has [`MAX_PENDING_PER_IP`] handshakes in progress.
    pub fn admit(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyPending> {
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= MAX_PENDING_PER_IP {
            return Err(TooManyPending(ip));
        }
        *count += 1;
        self.pending.insert(connection, ip);
        Ok(())
    }

    /// The handshake ended, either way.
    pub fn done(&mut self, connection: ConnectionId) {
        let Some(ip) = self.pending.remove(&connection) else { return };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for PendingPerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr).map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.done(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.done(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_a_few_pending_slots_and_others_still_get_in() {
        let mut pending = PendingPerIp::default();
        let attacker: Multiaddr = "/ip4/10.0.0.1/tcp/4000".parse().expect("address");
        let honest: Multiaddr = "/ip4/10.0.0.2/tcp/4000".parse().expect("address");
        let ids: Vec<ConnectionId> = (0..10).map(|_| ConnectionId::new_unchecked(rand_id())).collect();
        for id in &ids[..MAX_PENDING_PER_IP] {
            pending.admit(*id, &attacker).expect("within the bound");
        }
        for id in &ids[MAX_PENDING_PER_IP..8] {
            assert!(pending.admit(*id, &attacker).is_err(), "one address cannot take more");
        }
        pending.admit(ids[8], &honest).expect("another address gets in");
        // A handshake ends (failed or done): its slot is free again.
        pending.done(ids[0]);
        pending.admit(ids[9], &attacker).expect("room again");
        assert_eq!(pending.pending_from(ip_of(&attacker).expect("ip")), MAX_PENDING_PER_IP);
        for id in &ids {
            pending.done(*id);
        }
        assert!(pending.per_ip.is_empty() && pending.pending.is_empty(), "nothing kept");
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
