"""Mutual TLS for every gRPC connection under the deployment CA.

Clients pin the server's identity by name, not by address: node i's certificate carries the name
``node{i}``, the broker's ``broker``, so a misconfigured or malicious address book cannot send node
i's package to node j. Servers learn the client's certificate name from the TLS session, which is
how a node knows that round control comes from the broker.
"""

import os

import grpc

MAX_MESSAGE_BYTES = 80 << 20



# -- TLS -------------------------------------------------------------------------------------------
def _read(keys_dir: str, *parts: str) -> bytes:
    from ..common.keys import read_key_file
    return read_key_file(keys_dir, *parts)



def read_ca(keys_dir: str) -> bytes:
    """keys_dir/ca/ca.pem, the root every peer is checked against, read only if nobody but its
    owner (or root) can rewrite it or its directory.

    Raises:
        KeyFileError: missing, unreadable, or writable by group, others or another user.
    """
    from ..common.errors import KeyFileError
    from ..common.files import check_not_writable_by_others
    path = os.path.join(keys_dir, 'ca', 'ca.pem')
    try:
        check_not_writable_by_others(path, 'CA certificate')
    except OSError as exc:
        raise KeyFileError(f'{path}: cannot read ({exc.strerror})') from None
    return _read(keys_dir, 'ca', 'ca.pem')



def server_credentials(keys_dir: str, subdir: str, name: str) -> grpc.ServerCredentials:
    """Server side of mutual TLS: our certificate, clients must present one from the CA.

    Args:
        keys_dir: the deployment's keys directory.
        subdir: where our key pair is (nodes, broker).
        name: our certificate's name (node0, broker).

    Returns:
        Credentials that require a client certificate from the CA.

    Raises:
        KeyFileError: a key, certificate or the CA cannot be read (see read_ca).
    """
    return grpc.ssl_server_credentials([(_read(keys_dir, subdir, f'{name}.key'),
                                         _read(keys_dir, subdir, f'{name}.pem'))],
                                       root_certificates=read_ca(keys_dir), require_client_auth=True)



def client_credentials(keys_dir: str, subdir: str, name: str) -> grpc.ChannelCredentials:
    """Client side of mutual TLS: our certificate, the server's must be from the CA.

    Args:
        keys_dir: the deployment's keys directory.
        subdir: where our key pair is (clients, broker).
        name: our certificate's name.

    Returns:
        Channel credentials for secure_channel.

    Raises:
        KeyFileError: a key, certificate or the CA cannot be read (see read_ca).
    """
    return grpc.ssl_channel_credentials(read_ca(keys_dir), _read(keys_dir, subdir, f'{name}.key'),
                                        _read(keys_dir, subdir, f'{name}.pem'))



def secure_channel(address: str, credentials: grpc.ChannelCredentials, server_name: str) -> grpc.Channel:
    """A channel that accepts only a server certificate issued to server_name.

    Args:
        address: host:port.
        credentials: from client_credentials.
        server_name: the name the server's certificate must carry (node0, broker).

    Returns:
        The channel (it connects lazily).
    """
    return grpc.secure_channel(address, credentials, options=[
        ('grpc.ssl_target_name_override', server_name),
        ('grpc.initial_reconnect_backoff_ms', 200),   # a restarted node is reachable again within 2 s
        ('grpc.max_reconnect_backoff_ms', 2000),
        ('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
        ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)])



def server_options() -> list[tuple[str, int]]:
    """The gRPC server options every server shares (message size limits).

    Returns:
        (option, value) pairs.
    """
    return [('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
            ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)]



def client_name(context: grpc.ServicerContext) -> str:
    """The common name of the client's TLS certificate.

    Args:
        context: the RPC's server context.

    Returns:
        The name, '' without a certificate.
    """
    names = context.auth_context().get('x509_common_name') or [b'']
    return names[0].decode(errors='replace')
