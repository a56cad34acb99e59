#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Which upstream targets authtap may open a connection to. A value with no I/O: the handler asks it twice,
/// once on the name and port as the client spelled them, and again on every address the name resolves to.
///
/// With `--allow-remote` other machines reach this proxy, so it must not become their way into this machine
/// (loopback), its network (private ranges) or its cloud metadata (link-local): those are denied unless
/// `--allow-private-targets`, and only ports 80, 443 and 8443 are open unless `--allow-ports`.
/// A loopback-only listener applies none of this (its one user can reach those targets directly), but every
/// listener refuses requests aimed at authtap itself, in every spelling of its addresses.
public struct TargetPolicy: Sendable, Equatable {
    /// Whether the target rules apply (set by `--allow-remote`).
    public var enforced = false
    public var allowPrivateTargets = false
    /// Ports a client may reach when enforced; `nil` means any.
    public var allowedPorts: Set<Int>? = TargetPolicy.defaultPorts
    /// The machine's own interface addresses (4 or 16 bytes each): with the listen port, a loop.
    public var ownAddresses: [[UInt8]] = []

    public static let defaultPorts: Set<Int> = [80, 443, 8443]

    public init() {}

    public enum Denial: Equatable, Sendable {
        /// The target is authtap's own listener.
        case selfLoop
        case port(Int)
        case address(String, AddressClass)
    }

    /// The checks that need no DNS: the port, a literal address in any spelling, and `localhost` names.
    /// `listenAddress` is the listener's own address (4 or 16 bytes), when it is bound to one.
    public func check(host: String, port: Int, listenPort: Int, listenAddress: [UInt8]?) -> Denial? {
        // The common case on a loopback listener: no rule to apply, and no loop on another port.
        if !enforced && port != listenPort { return nil }
        let literal = HostAddress.parse(host) ?? (HostAddress.isLocalhostName(host) ? [127, 0, 0, 1] : nil)
        if let literal, isSelf(literal, port: port, listenPort: listenPort, listenAddress: listenAddress) {
            return .selfLoop
        }
        guard enforced else { return nil }
        if let allowedPorts, !allowedPorts.contains(port) { return .port(port) }
        if let literal { return check(address: literal) }
        return nil
    }

    /// The check on what a name resolved to: every address must pass, not just the first.
    public func check(resolved: [[UInt8]], port: Int, listenPort: Int, listenAddress: [UInt8]?) -> Denial? {
        if resolved.contains(where: { isSelf($0, port: port, listenPort: listenPort, listenAddress: listenAddress) }) {
            return .selfLoop
        }
        guard enforced else { return nil }
        for address in resolved {
            if let denial = check(address: address) { return denial }
        }
        return nil
    }

    private func check(address: [UInt8]) -> Denial? {
        let kind = HostAddress.classify(address)
        if kind == .global || allowPrivateTargets { return nil }
        return .address(HostAddress.format(address), kind)
    }

    /// Loopback, the unspecified address, the listener's own and every interface address, on the listen port.
    func isSelf(_ address: [UInt8], port: Int, listenPort: Int, listenAddress: [UInt8]?) -> Bool {
        guard port == listenPort else { return false }
        let normal = HostAddress.embeddedIPv4(address) ?? address
        switch HostAddress.classify(normal) {
        case .loopback, .unspecified: return true
        default: break
        }
        if let listenAddress, (HostAddress.embeddedIPv4(listenAddress) ?? listenAddress) == normal { return true }
        return ownAddresses.contains { (HostAddress.embeddedIPv4($0) ?? $0) == normal }
    }

    /// What a denial says to the client and in the record.
    public static func describe(_ denial: Denial, host: String) -> String {
        switch denial {
        case .selfLoop:
            return "\(host) is authtap's own listener"
        case .port(let port):
            return "port \(port) is not allowed with --allow-remote (allowed: 80, 443, 8443 unless --allow-ports)"
        case .address(let address, let kind):
            let shown = address == host ? address : "\(host) (\(address))"
            return "\(shown) is a \(kind.rawValue) address; with --allow-remote only public addresses are "
                + "reachable unless --allow-private-targets"
        }
    }

    /// `80,443,8000-8100` → ports; `nil` when the list is malformed or out of 1...65535.
    public static func parsePorts(_ text: String) -> Set<Int>? {
        var ports: Set<Int> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let part = item.trimmingSpaces
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                (1...65535).contains(low), (1...65535).contains(high), low <= high
            else { return nil }
            if high - low > 65535 { return nil }
            ports.formUnion(low...high)
        }
        return ports.isEmpty ? nil : ports
    }
}

/// The class of an IP address, as far as reaching it from a shared proxy matters.
public enum AddressClass: String, Sendable {
    case global = "public"
    case loopback
    /// 0.0.0.0/8 and `::`: connecting to them reaches this machine.
    case unspecified
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    case privateNetwork = "private"
    /// 100.64/10, carrier-grade NAT (some clouds' metadata services live there).
    case sharedAddressSpace = "shared (CGNAT)"
    /// 169.254/16 (cloud metadata at 169.254.169.254), fe80::/10.
    case linkLocal = "link-local"
    case multicast
    /// Documentation, benchmarking, protocol-assignment and future-use blocks.
    case reserved
}

/// IP literals in every spelling a resolver accepts, and their classes.
public enum HostAddress {
    /// 4 or 16 bytes for an IP literal: IPv4 in the inet_aton forms (`127.1`, `0x7f.1`, `2130706433`,
    /// `0177.0.0.1`, a trailing dot), IPv6 with or without brackets and zone; `nil` for a name.
    public static func parse(_ text: String) -> [UInt8]? {
        var host = Substring(text)
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        if host.contains(":") {
            if let percent = host.firstIndex(of: "%") { host = host[..<percent] }
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, String(host), &v6) == 1 else { return nil }
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return parseIPv4(host)
    }

    /// The inet_aton grammar (which getaddrinfo and most URL parsers follow): one to four parts, each decimal,
    /// octal (leading 0) or hex (0x); the last part fills the remaining bytes.
    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        var parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count > 1, parts.last?.isEmpty == true { parts.removeLast() }
        guard (1...4).contains(parts.count) else { return nil }
        var values: [UInt64] = []
        for part in parts {
            guard let value = parseNumber(part) else { return nil }
            values.append(value)
        }
        guard let last = values.last else { return nil }
        for value in values.dropLast() where value > 255 { return nil }
        let lastBytes = 5 - values.count
        guard last < (UInt64(1) << (8 * UInt64(lastBytes))) else { return nil }
        var bytes = values.dropLast().map { UInt8(truncatingIfNeeded: $0) }
        for shift in stride(from: lastBytes - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: last >> (8 * UInt64(shift))))
        }
        return bytes
    }

    private static func parseNumber(_ part: Substring) -> UInt64? {
        var digits = part
        var radix: UInt64 = 10
        if digits.count >= 2, digits.hasPrefix("0x") || digits.hasPrefix("0X") {
            digits = digits.dropFirst(2)
            radix = 16
            if digits.isEmpty { return 0 }
        } else if digits.count >= 2, digits.hasPrefix("0") {
            digits = digits.dropFirst()
            radix = 8
        }
        guard !digits.isEmpty, digits.utf8.count <= 32 else { return nil }
        var value: UInt64 = 0
        for c in digits.utf8 {
            let d: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt64(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            guard d < radix else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = times.addingReportingOverflow(d)
            guard !overflow1, !overflow2, sum <= UInt64(UInt32.max) else { return nil }
            value = sum
        }
        return value
    }

    /// `localhost`, `localhost.` and names under it (RFC 6761 §6.3): resolvers answer them with loopback.
    public static func isLocalhostName(_ host: String) -> Bool {
        var h = host.lowercased()
        if h.hasSuffix(".") { h.removeLast() }
        return h == "localhost" || h.hasSuffix(".localhost")
    }

    /// The IPv4 address an IPv6 address carries and routes to: v4-mapped (`::ffff:a.b.c.d`), v4-compatible,
    /// NAT64 (64:ff9b::/96) and 6to4 (2002::/16). `nil` for IPv4 and other IPv6.
    public static func embeddedIPv4(_ a: [UInt8]) -> [UInt8]? {
        guard a.count == 16 else { return nil }
        let top10Zero = a[0..<10].allSatisfy { $0 == 0 }
        if top10Zero, a[10] == 0xff, a[11] == 0xff { return Array(a[12..<16]) }
        // ::a.b.c.d, but not :: and ::1, which are IPv6's own.
        if top10Zero, a[10] == 0, a[11] == 0, a[12..<15].contains(where: { $0 != 0 }) { return Array(a[12..<16]) }
        if a[0] == 0x00, a[1] == 0x64, a[2] == 0xff, a[3] == 0x9b, a[4..<12].allSatisfy({ $0 == 0 }) {
            return Array(a[12..<16])
        }
        if a[0] == 0x20, a[1] == 0x02 { return Array(a[2..<6]) }
        return nil
    }

    public static func classify(_ address: [UInt8]) -> AddressClass {
        if let v4 = embeddedIPv4(address) { return classify(v4) }
        if address.count == 4 { return classifyIPv4(address[0], address[1], address[2], address[3]) }
        guard address.count == 16 else { return .reserved }
        if address.allSatisfy({ $0 == 0 }) { return .unspecified }
        if address[0..<15].allSatisfy({ $0 == 0 }), address[15] == 1 { return .loopback }
        if address[0] == 0xfe, address[1] & 0xc0 == 0x80 { return .linkLocal }
        // fec0::/10, site-local: deprecated, but still routed inside some networks.
        if address[0] == 0xfe, address[1] & 0xc0 == 0xc0 { return .privateNetwork }
        if address[0] & 0xfe == 0xfc { return .privateNetwork }
        if address[0] == 0xff { return .multicast }
        // 2001:db8::/32 documentation; 100::/64 discard.
        if address[0] == 0x20, address[1] == 0x01, address[2] == 0x0d, address[3] == 0xb8 { return .reserved }
        if address[0] == 0x01, address[1..<8].allSatisfy({ $0 == 0 }) { return .reserved }
        return .global
    }

    static func classifyIPv4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _: UInt8) -> AddressClass {
        switch (a, b) {
        case (0, _): return .unspecified
        case (10, _): return .privateNetwork
        case (100, 64...127): return .sharedAddressSpace
        case (127, _): return .loopback
        case (169, 254): return .linkLocal
        case (172, 16...31): return .privateNetwork
        case (192, 168): return .privateNetwork
        case (192, 0) where c == 0 || c == 2: return .reserved
        case (198, 18...19): return .reserved
        case (198, 51) where c == 100: return .reserved
        case (203, 0) where c == 113: return .reserved
        case (224...239, _): return .multicast
        case (240...255, _): return .reserved
        default: return .global
        }
    }

    public static func format(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        var i = 0
        while i + 1 < address.count {
            groups.append(String(UInt16(address[i]) << 8 | UInt16(address[i + 1]), radix: 16))
            i += 2
        }
        return "[" + groups.joined(separator: ":") + "]"
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
