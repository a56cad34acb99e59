import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Name resolution for the target policy: every address a name has, looked up off the event loop, so that
/// the addresses checked are the very ones connected to (a second lookup could answer differently).
enum TargetResolution {
    struct Failure: Error {}

    /// Every IPv4 and IPv6 address of `host` (a literal in any inet_aton spelling resolves to itself).
    static func resolve(host: String, on loop: any EventLoop) -> EventLoopFuture<[[UInt8]]> {
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) { try lookup(host) }
    }

    private static func lookup(_ host: String) throws -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { throw Failure() }
        defer { freeaddrinfo(first) }
        var out: [[UInt8]] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let info = node {
            if let address = info.pointee.ai_addr {
                switch Int32(address.pointee.sa_family) {
                case AF_INET:
                    let bytes = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
                    }
                    if !out.contains(bytes) { out.append(bytes) }
                case AF_INET6:
                    let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                    }
                    if !out.contains(bytes) { out.append(bytes) }
                default:
                    break
                }
            }
            node = info.pointee.ai_next
        }
        guard !out.isEmpty else { throw Failure() }
        return out
    }

    /// The machine's interface addresses (4 or 16 bytes each), read once at start.
    static func interfaceAddresses() -> [[UInt8]] {
        let devices = (try? System.enumerateDevices()) ?? []
        return devices.compactMap { device in device.address.flatMap(bytes) }
    }

    static func bytes(_ address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let a): return withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
        case .v6(let a): return withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
        default: return nil
        }
    }

    static func socketAddresses(_ addresses: [[UInt8]], port: Int) -> [SocketAddress] {
        addresses.compactMap { bytes in
            var buffer = ByteBuffer()
            buffer.writeBytes(bytes)
            return try? SocketAddress(packedIPAddress: buffer, port: port)
        }
    }
}

/// A resolver that answers with addresses already resolved and checked, so the connection goes to exactly
/// them (Happy Eyeballs still races IPv6 against IPv4 among them).
final class CheckedAddressResolver: Resolver, Sendable {
    private let v4: [SocketAddress]
    private let v6: [SocketAddress]
    private let loop: any EventLoop

    init(addresses: [[UInt8]], port: Int, loop: any EventLoop) {
        let all = TargetResolution.socketAddresses(addresses, port: port)
        v4 = all.filter { if case .v4 = $0 { return true } else { return false } }
        v6 = all.filter { if case .v6 = $0 { return true } else { return false } }
        self.loop = loop
    }

    func initiateAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> { loop.makeSucceededFuture(v4) }
    func initiateAAAAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> { loop.makeSucceededFuture(v6) }
    func cancelQueries() {}
}

extension TargetPolicy {
    /// The machine's interface addresses, for loop detection; read once at start (not on an event loop).
    public static func machineAddresses() -> [[UInt8]] { TargetResolution.interfaceAddresses() }
}
