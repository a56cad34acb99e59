/// Where the proxy hands what it saw: each finished exchange and tunnel, once.
///
/// The proxy knows only this; the executable passes the store's capture writer in, and tests can pass a
/// collector. Every method is called from event loops, so none may block on disk.
public protocol ExchangeSink: AnyObject, Sendable {
    /// Queues an exchange; returns at once (a sink that is full drops it and counts the drop).
    func submit(_ exchange: consuming Exchange)
    /// Queues a tunnel's record; returns at once.
    func submit(_ tunnel: Tunnel)
    /// True while the sink is behind: the proxy then holds new requests until it catches up.
    var isBackedUp: Bool { get }
    /// Stops accepting and writes out everything queued; returns when that is done.
    func close()
}
