import AuthtapCA
import Foundation
import NIOCore
import NIOSSL

/// Everything the proxy needs to know, fixed at start.
public struct ProxyConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    public var allowRemote = false
    /// `user:pass` required in Proxy-Authorization (Basic) when set.
    public var proxyAuth: (user: String, password: String)?
    /// Which upstream targets are reachable; enforced with `allowRemote` (see `TargetPolicy`).
    public var targetPolicy = TargetPolicy()
    /// Shared by every copy of this configuration: read by the command when the proxy stops.
    public var counters = ProxyCounters()
    public var bodyLimit = 1 << 20
    /// Seconds.
    public var connectTimeout: Double = 10
    /// Timeouts on both legs and the client connection cap (see `ProxyLimits`).
    public var limits = ProxyLimits()
    /// Host globs to intercept; empty means intercept every CONNECT.
    public var intercept: [String] = []
    public var insecureUpstream = false
    public var maxHeaderBytes = 64 * 1024
    /// Event loops: one per core but one, which the capture writer's thread (masking and inserts)
    /// keeps busy under load; at least one. A loop per core would compete with the writer for the
    /// same cores (docs/performance.md has the measurement).
    public var threads = max(1, System.coreCount - 1)
    /// NSS key-log lines for both TLS legs (for Wireshark), when set.
    public var keyLog: NIOSSLKeyLogCallback?
    /// Whether either TLS leg offers HTTP/2 in ALPN (each leg negotiates on its own).
    public var http2 = true
    /// Reverse listeners: each forwards every request it gets to one upstream origin. Empty for forward mode.
    public var reverse: [ReverseTarget] = []

    /// The ALPN protocols offered on a TLS leg, most preferred first.
    public var applicationProtocols: [String] { http2 ? ["h2", "http/1.1"] : ["http/1.1"] }

    public init() {}

    /// Whether a CONNECT to `host:port` is intercepted (MITM) or relayed byte for byte.
    public func shouldIntercept(host: String, port: Int) -> Bool {
        if intercept.isEmpty { return true }
        let h = host.lowercased()
        return intercept.contains { glob in
            let g = glob.lowercased()
            return Glob.matches(g, h) || Glob.matches(g, "\(h):\(port)")
        }
    }

    /// Loopback listen addresses need nothing more; anything else needs --allow-remote and --proxy-auth.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" { return true }
        if let bytes = IPAddress.bytes(h), bytes.count == 4 { return bytes[0] == 127 }
        return false
    }
}

/// Shell-style `*` and `?` matching, case-insensitive by the caller.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
