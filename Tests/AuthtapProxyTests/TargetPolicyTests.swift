import Testing

@testable import AuthtapProxy

/// Every spelling a resolver (glibc inet_aton / getaddrinfo, WHATWG URL hosts) turns into an address.
@Test(
    arguments: [
        ("127.0.0.1", [127, 0, 0, 1]),
        ("127.1", [127, 0, 0, 1]),
        ("0", [0, 0, 0, 0]),
        ("0x7f.1", [127, 0, 0, 1]),
        ("0X7F.0.0.1", [127, 0, 0, 1]),
        ("2130706433", [127, 0, 0, 1]),
        ("0177.0.0.1", [127, 0, 0, 1]),
        ("017700000001", [127, 0, 0, 1]),
        ("127.0.0.1.", [127, 0, 0, 1]),
        ("169.254.169.254", [169, 254, 169, 254]),
        ("0xa9fea9fe", [169, 254, 169, 254]),
        ("10.1.65535", [10, 1, 255, 255]),
    ] as [(String, [UInt8])])
func ipv4LiteralsInEverySpelling(_ text: String, _ bytes: [UInt8]) {
    #expect(HostAddress.parse(text) == bytes)
}

@Test(arguments: [
    "example.com", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08.1.1.1", "0x1g.1", "4294967296", "",
    ".", "1..1", "12.34.56.78a", "localhost",
])
func namesAndBadNumbersAreNotLiterals(_ text: String) {
    #expect(HostAddress.parse(text) == nil)
}

@Test(
    arguments: [
        ("::1", AddressClass.loopback), ("[::1]", .loopback), ("::", .unspecified),
        ("[::ffff:127.0.0.1]", .loopback), ("::ffff:7f00:1", .loopback), ("::ffff:169.254.169.254", .linkLocal),
        ("64:ff9b::a9fe:a9fe", .linkLocal), ("2002:0a00:0001::1", .privateNetwork), ("::10.0.0.1", .privateNetwork),
        ("fe80::1%eth0", .linkLocal), ("fd00:ec2::254", .privateNetwork), ("fc00::1", .privateNetwork),
        ("ff02::1", .multicast), ("2001:db8::1", .reserved), ("2606:4700::1111", .global),
        ("127.0.0.1", .loopback), ("127.255.255.254", .loopback), ("0.0.0.0", .unspecified), ("0.1.2.3", .unspecified),
        ("10.0.0.1", .privateNetwork), ("172.16.0.1", .privateNetwork), ("172.31.255.255", .privateNetwork),
        ("172.32.0.1", .global), ("172.15.0.1", .global), ("192.168.1.1", .privateNetwork),
        ("100.64.0.1", .sharedAddressSpace),
        ("100.127.255.255", .sharedAddressSpace), ("100.128.0.1", .global), ("169.254.169.254", .linkLocal),
        ("224.0.0.1", .multicast), ("255.255.255.255", .reserved), ("8.8.8.8", .global), ("93.184.216.34", .global),
    ] as [(String, AddressClass)])
func addressClasses(_ text: String, _ kind: AddressClass) throws {
    let bytes = try #require(HostAddress.parse(text))
    #expect(HostAddress.classify(bytes) == kind)
}

private func enforced(_ change: (inout TargetPolicy) -> Void = { _ in }) -> TargetPolicy {
    var p = TargetPolicy()
    p.enforced = true
    p.ownAddresses = [[192, 0, 2, 7], HostAddress.parse("2001:db8::7")!]
    change(&p)
    return p
}

/// Loop prevention holds on every listener, enforced or not, in every spelling of authtap's addresses.
@Test(arguments: [
    "127.0.0.1", "127.1", "0", "0x7f.1", "2130706433", "localhost", "localhost.", "LOCALHOST",
    "app.localhost", "[::ffff:127.0.0.1]", "[::1]", "::1", "0.0.0.0", "[::]", "192.0.2.7",
    "[2001:db8::7]", "[::ffff:192.0.2.7]",
])
func requestsToAuthtapItselfAreRecognised(_ host: String) {
    for enforce in [false, true] {
        var p = enforced()
        p.enforced = enforce
        let loop = p.check(host: host, port: 8080, listenPort: 8080, listenAddress: [127, 0, 0, 1])
        #expect(loop == .selfLoop, "\(host)")
        // Another port of the same machine is no loop.
        #expect(p.check(host: host, port: 8081, listenPort: 8080, listenAddress: [127, 0, 0, 1]) != .selfLoop)
    }
}

@Test func theListenAddressItselfIsALoop() {
    let p = TargetPolicy()
    #expect(p.check(host: "203.0.113.9", port: 3128, listenPort: 3128, listenAddress: [203, 0, 113, 9]) == .selfLoop)
    let resolved = p.check(
        resolved: [[203, 0, 113, 9]], port: 3128, listenPort: 3128, listenAddress: [203, 0, 113, 9])
    #expect(resolved == .selfLoop)
}

@Test func aLoopbackListenerAppliesNoTargetRule() {
    let p = TargetPolicy()
    #expect(p.check(host: "10.0.0.1", port: 22, listenPort: 8080, listenAddress: nil) == nil)
    #expect(p.check(host: "127.0.0.1", port: 5432, listenPort: 8080, listenAddress: nil) == nil)
    #expect(p.check(resolved: [[169, 254, 169, 254]], port: 80, listenPort: 8080, listenAddress: nil) == nil)
}

@Test(
    arguments: [
        ("127.0.0.1", 80), ("2130706433", 443), ("10.0.0.1", 443), ("[fd00:ec2::254]", 80), ("169.254.169.254", 80),
        ("100.100.100.200", 80), ("192.168.0.1", 8443), ("[::ffff:10.0.0.1]", 443), ("0.0.0.0", 80), ("localhost", 443),
    ] as [(String, Int)])
func enforcedPolicyDeniesNonPublicLiterals(_ host: String, _ port: Int) {
    guard case .address = enforced().check(host: host, port: port, listenPort: 8080, listenAddress: nil) else {
        Issue.record("\(host) was not denied")
        return
    }
    let lifted = enforced { $0.allowPrivateTargets = true }
    #expect(lifted.check(host: host, port: port, listenPort: 8080, listenAddress: nil) == nil)
}

@Test func everyResolvedAddressIsChecked() {
    let p = enforced()
    // A name with one public and one private address is refused: a client could not choose which is used.
    #expect(
        p.check(resolved: [[93, 184, 216, 34], [10, 0, 0, 5]], port: 443, listenPort: 8080, listenAddress: nil)
            == .address("10.0.0.5", .privateNetwork))
    #expect(
        p.check(
            resolved: [[93, 184, 216, 34], HostAddress.parse("2606:4700::1111")!], port: 443, listenPort: 8080,
            listenAddress: nil) == nil)
    // A name that resolves to the machine's own interface, at the listen port, is a loop even when private is allowed.
    #expect(
        enforced { $0.allowPrivateTargets = true }.check(
            resolved: [[192, 0, 2, 7]], port: 8080, listenPort: 8080,
            listenAddress: nil) == .selfLoop)
}

@Test func portsAreLimitedWhenEnforced() {
    let p = enforced()
    for port in [80, 443, 8443] {
        #expect(p.check(host: "example.com", port: port, listenPort: 1, listenAddress: nil) == nil)
    }
    for port in [22, 25, 6379, 8080, 65535] {
        #expect(p.check(host: "example.com", port: port, listenPort: 1, listenAddress: nil) == .port(port))
    }
    let wide = enforced { $0.allowedPorts = TargetPolicy.parsePorts("80, 8000-8002") }
    #expect(wide.check(host: "example.com", port: 8001, listenPort: 1, listenAddress: nil) == nil)
    #expect(wide.check(host: "example.com", port: 443, listenPort: 1, listenAddress: nil) == .port(443))
    let any = enforced { $0.allowedPorts = nil }
    #expect(any.check(host: "example.com", port: 22, listenPort: 1, listenAddress: nil) == nil)
}

@Test func portListsParse() {
    #expect(TargetPolicy.parsePorts("80,443") == [80, 443])
    #expect(TargetPolicy.parsePorts(" 8000-8002 ,22") == [22, 8000, 8001, 8002])
    for bad in ["", "0", "65536", "80,", "a", "90-80", "1-2-3", "-5", "80;443"] {
        #expect(TargetPolicy.parsePorts(bad) == nil, "\(bad)")
    }
}

@Test func denialsExplainThemselves() {
    let text = TargetPolicy.describe(.address("10.0.0.5", .privateNetwork), host: "intranet.example")
    #expect(text.contains("intranet.example (10.0.0.5) is a private address"))
    #expect(text.contains("--allow-private-targets"))
    #expect(TargetPolicy.describe(.port(22), host: "x").contains("--allow-ports"))
    #expect(HostAddress.format(HostAddress.parse("fd00:ec2::254")!) == "[fd00:ec2:0:0:0:0:0:254]")
}
