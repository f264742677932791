//! The reference framed protocol: codec, server, client and its Manager.
