//! Which user owns the client end of a loopback TCP connection: one exact lookup of the
//! client's socket, by its four addresses, through the kernel's `sock_diag` netlink
//! interface. (Reading `/proc/net/tcp` instead walks every bucket of the kernel's
//! connection table: milliseconds of kernel time on every request.)

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddress};
use std::io;
use std::net::SocketAddr;

/// "Any socket cookie" in a `sock_diag` request (`INET_DIAG_NOCOOKIE`, both halves).
const ANY_COOKIE: [u8; 8] = [0xff; 8];

/// The uid owning the socket at `client` connected to `server`: the client end of a
/// connection this process accepted on `server` from `client`. `None` if the kernel knows
/// no such socket (it closed, or it is on another host) or cannot be asked.
pub fn client_uid(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    match lookup(client, server) {
        Ok(uid) => uid,
        Err(err) => {
            tracing::warn!(%err, "sock_diag lookup of a loopback caller failed");
            None
        }
    }
}

fn lookup(client: SocketAddr, server: SocketAddr) -> io::Result<Option<u32>> {
    let (client, server) = (canonical(client), canonical(server));
    let family = if client.is_ipv4() { AF_INET } else { AF_INET6 };
    let socket_id = SocketId {
        source_port: client.port(),
        destination_port: server.port(),
        source_address: client.ip(),
        destination_address: server.ip(),
        interface_id: 0,
        cookie: ANY_COOKIE,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id,
    });
    let mut message = NetlinkMessage::new(header, request.into());
    message.finalize();
    let mut request_bytes = vec![0; message.buffer_len()];
    message.serialize(&mut request_bytes);

    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddress::new(0, 0))?;
    socket.send(&request_bytes, 0)?;
    let mut reply = vec![0; 8192];
    let size = socket.recv(&mut &mut reply[..], 0)?;
    let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&reply[..size])
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    Ok(match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Some(response.header.uid)
        }
        // An error reply (ENOENT): no such socket.
        _ => None,
    })
}

/// An IPv4-mapped IPv6 address as the IPv4 one the kernel keys the socket by.
fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|meta| meta.uid())
            .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn the_client_end_of_a_loopback_connection_belongs_to_the_user_that_opened_it() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(bind) else {
                continue; // no IPv6 loopback on this host
            };
            let server = listener.local_addr().unwrap_or_else(|err| panic!("{err}"));
            let _client =
                std::net::TcpStream::connect(server).unwrap_or_else(|err| panic!("{err}"));
            let (_accepted, client) = listener.accept().unwrap_or_else(|err| panic!("{err}"));

            assert_eq!(client_uid(client, server), Some(own_uid()), "{bind}");
        }
    }

    #[test]
    fn a_connection_the_kernel_does_not_know_has_no_owner() {
        let server = SocketAddr::from(([127, 0, 0, 1], 9));
        let client = SocketAddr::from(([127, 0, 0, 1], 1));

        assert_eq!(client_uid(client, server), None);
    }
}
