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
def _read(keys_dir, *parts):
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



def server_credentials(keys_dir, subdir, name):
    """Server side of mutual TLS: our certificate, clients must present one from the CA."""
    return grpc.ssl_server_credentials([(_read(keys_dir, subdir, f'{name}.key'),
                                         _read(keys_dir, subdir, f'{name}.pem'))],
                                       root_certificates=read_ca(keys_dir), require_client_auth=True)



def client_credentials(keys_dir, subdir, name):
    return grpc.ssl_channel_credentials(read_ca(keys_dir), _read(keys_dir, subdir, f'{name}.key'),
                                        _read(keys_dir, subdir, f'{name}.pem'))



def secure_channel(address, credentials, server_name):
    """A channel that accepts only a server certificate issued to server_name (node0, broker)."""
    return grpc.secure_channel(address, credentials, options=[
        ('grpc.ssl_target_name_override', server_name),
        ('grpc.initial_reconnect_backoff_ms', 200),   # a restarted node is reachable again within 2 s
        ('grpc.max_reconnect_backoff_ms', 2000),
        ('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
        ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)])



def server_options():
    return [('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
            ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)]



def client_name(context):
    """The common name of the client's TLS certificate ('' without one)."""
    names = context.auth_context().get('x509_common_name') or [b'']
    return names[0].decode(errors='replace')
