//! Descriptor passing: a listening socket sent over a Unix socket pair
//! still accepts connections on the receiving side.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use smx_ipc::IpcError;
use smx_ipc::fd::{recv_fd, recv_fd_async, send_fd, send_fd_async};

fn accept_on(listener: &TcpListener) {
    let addr = listener.local_addr().expect("local addr");
    let mut client = TcpStream::connect(addr).expect("connect");
    let (mut conn, _) = listener.accept().expect("accept on the received fd");
    conn.write_all(b"220 ok\r\n").expect("write");
    let mut greeting = [0u8; 8];
    client.read_exact(&mut greeting).expect("read");
    assert_eq!(&greeting, b"220 ok\r\n");
}

#[test]
fn listening_socket_survives_the_trip() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let original = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = original.local_addr().expect("local addr");
    send_fd(&a, original.as_fd()).expect("send_fd");
    // Only the received copy stays open.
    drop(original);
    let received = TcpListener::from(recv_fd(&b).expect("recv_fd"));
    assert_eq!(received.local_addr().expect("local addr"), addr);
    accept_on(&received);
}

#[test]
fn several_descriptors_in_a_row() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for l in &listeners {
        send_fd(&a, l.as_fd()).expect("send_fd");
    }
    for l in &listeners {
        let got = TcpListener::from(recv_fd(&b).expect("recv_fd"));
        assert_eq!(got.local_addr().ok(), l.local_addr().ok());
    }
}

#[test]
fn end_of_stream_and_missing_descriptor_are_typed_errors() {
    let (mut a, b) = UnixStream::pair().expect("socketpair");
    a.write_all(b"F").expect("write");
    assert!(matches!(recv_fd(&b), Err(IpcError::NoFd)));
    drop(a);
    assert!(matches!(recv_fd(&b), Err(IpcError::Closed)));
}

#[tokio::test]
async fn async_variants_on_tokio_sockets() {
    let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
    let original = TcpListener::bind("127.0.0.1:0").expect("bind");
    let receiver = tokio::spawn(async move { recv_fd_async(&b).await });
    send_fd_async(&a, original.as_fd()).await.expect("send");
    drop(original);
    let received = TcpListener::from(receiver.await.expect("join").expect("recv"));
    accept_on(&received);
}
