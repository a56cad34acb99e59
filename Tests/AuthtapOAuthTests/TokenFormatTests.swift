import Testing

@testable import AuthtapOAuth

private func scan(_ text: String) -> [(range: Range<Int>, id: String)] {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBufferPointer { b in
        TokenFormats.scan(UnsafeBufferPointer(b)).map { ($0.range, $0.format.id) }
    }
}

/// Where `needle` starts in `text`, in UTF-8 bytes.
private func offset(of needle: String, in text: String) -> Range<Int> {
    let t = Array(text.utf8), n = Array(needle.utf8)
    for i in 0...(t.count - n.count) where Array(t[i..<(i + n.count)]) == n { return i..<(i + n.count) }
    fatalError("\(needle) not in \(text)")
}

private func format(_ id: String) -> TokenFormat { TokenFormats.all.first { $0.id == id }! }

private let tokenIDs = TokenFormats.all.filter { !$0.isPEMBlock }.map(\.id)
private let fixedLengthIDs = TokenFormats.all.filter { !$0.isPEMBlock && $0.minBody == $0.maxBody }.map(\.id)

@Suite struct TokenFormatTableTests {
    @Test func tableIsLargeAndWellFormed() {
        #expect(TokenFormats.all.count >= 30)
        #expect(Set(TokenFormats.all.map(\.id)).count == TokenFormats.all.count, "ids are unique")
        for format in TokenFormats.all {
            #expect(!format.prefixes.isEmpty && format.prefixes.allSatisfy { !$0.isEmpty }, "\(format.id)")
            #expect(format.minBody <= format.maxBody, "\(format.id)")
            #expect(format.source.contains("/"), "\(format.id) names a repository and path")
        }
    }

    /// The formats the brief names must all be present.
    @Test(arguments: [
        "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-",
        "xoxr-", "xoxs-", "xoxe-", "xapp-", "AKIA", "ASIA", "ABIA", "ACCA", "AIza", "ya29.", "sk_live_",
        "sk_test_", "rk_live_", "rk_test_", "npm_", "pypi-AgEIcHlwaS5vcmc", "sk-proj-", "hf_", "SG.",
        "shpat_", "shpss_", "shpca_", "shppa_", "dop_v1_", "doo_v1_", "dor_v1_", "SK", "sq0atp-",
        "sq0csp-", "ATATT3", "AccountKey=", "-----BEGIN",
    ])
    func prefixIsCovered(_ prefix: String) {
        #expect(TokenFormats.all.contains { $0.prefixes.contains(prefix) })
    }
}

@Suite struct TokenFormatMatchTests {
    @Test(arguments: TokenFormats.all.map(\.id))
    func exampleMatchesWhole(_ id: String) {
        let format = format(id)
        let hits = scan(format.example)
        #expect(hits.count == 1)
        #expect(hits.first?.id == format.id)
        #expect(hits.first?.range == 0..<format.example.utf8.count)
    }

    /// `shortestMatch` lets the masker skip values too short for any shape, so every example is at least that long
    /// and the shortest body a format allows, under its shortest prefix, is a match of exactly that length.
    @Test(arguments: tokenIDs)
    func noMatchIsShorterThanTheShortestMatch(_ id: String) throws {
        let format = format(id)
        #expect(format.example.utf8.count >= TokenFormats.shortestMatch)
        let prefix = try #require(format.prefixes.min { $0.utf8.count < $1.utf8.count })
        let bodyByte = try #require((0...127).map(UInt8.init).first { format.body.contains($0) })
        var body = [UInt8](repeating: bodyByte, count: format.minBody)
        if let infix = format.infix, infix.utf8.count <= body.count {
            body.replaceSubrange(0..<infix.utf8.count, with: Array(infix.utf8))
        }
        let shortest = prefix + String(decoding: body, as: UTF8.self)
        #expect(shortest.utf8.count >= TokenFormats.shortestMatch)
        #expect(Masker.shortestShape <= TokenFormats.shortestMatch)
        #expect(scan(shortest).allSatisfy { $0.range.count >= TokenFormats.shortestMatch })
    }

    /// The places a token turns up in OAuth traffic, raw or still encoded.
    static let contexts: [(String, String)] = [
        ("JSON value", #"{"token":"TOKEN","n":1}"#),
        ("bearer header", "Authorization: Bearer TOKEN"),
        ("query value", "/cb?access_token=TOKEN&state=xyz"),
        ("URL path", "/api/TOKEN/profile"),
        ("after a JSON escape", #"{"log":"line one\nTOKEN"}"#),
        ("after a percent escape", "q=key%20TOKEN%26next"),
        ("XML text", "<token>TOKEN</token>"),
        ("free text", "value is TOKEN."),
    ]

    @Test(arguments: tokenIDs, contexts.indices)
    func exampleMatchesInContext(_ id: String, _ context: Int) {
        let format = format(id)
        // A body that may hold `/` runs on into the rest of a path: the boundary is ambiguous there.
        if format.body.contains(UInt8(ascii: "/")), Self.contexts[context].0 == "URL path" { return }
        // A trailing "." would extend bodies that allow dots (SendGrid, routable GitLab); the boundary is the point.
        var text = Self.contexts[context].1.replacingFirst("TOKEN", with: format.example)
        if format.body.contains(UInt8(ascii: ".")) { text = text.replacingFirst(".", with: " ", after: format.example) }
        let hits = scan(text)
        #expect(hits.map(\.id) == [format.id], "\(Self.contexts[context].0): \(text)")
        #expect(hits.first?.range == offset(of: format.example, in: text))
    }

    @Test(arguments: tokenIDs)
    func exampleGluedToAWordIsNotAToken(_ id: String) {
        let format = format(id)
        #expect(!scan("x" + format.example).contains { $0.range.lowerBound == 1 && $0.id == format.id })
    }

    /// One more body byte makes a fixed-length token something else; one fewer makes it too short.
    @Test(arguments: fixedLengthIDs)
    func fixedLengthIsExact(_ id: String) {
        let format = format(id)
        let longer = format.example + String(decoding: [extraByte(format.body)], as: UTF8.self)
        #expect(!scan(longer).contains { $0.id == format.id }, "\(longer)")
        let shorter = String(format.example.dropLast())
        #expect(!scan(shorter).contains { $0.id == format.id }, "\(shorter)")
    }

    private func extraByte(_ body: ByteClass) -> UInt8 {
        Array("0aA_-".utf8).first { body.contains($0) }!
    }

    @Test func severalTokensInOneBuffer() {
        let gh = format("github-pat").example
        let aws = "AKIAIOSFODNN7EXAMPLE"
        let text = "a=\(gh)&b=\(aws)"
        #expect(scan(text).map(\.id) == ["github-pat", "aws-access-token"])
        #expect(scan(text).map(\.range) == [offset(of: gh, in: text), offset(of: aws, in: text)])
    }

    @Test func openAIKeysNeedTheirInfix() {
        #expect(scan("sk-" + String(repeating: "a1B2", count: 12)).isEmpty)
        #expect(scan("sk-proj-" + String(repeating: "a1B2", count: 37)).isEmpty)
    }
}

@Suite struct TokenFormatNegativeTests {
    /// Text that resembles a prefix but is not a token, much of it from real OAuth traffic.
    @Test(arguments: [
        // Near misses.
        "ghp_short", "the ghp_ prefix", "xAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPL", "task-sk-management",
        "sk_live_short", "xoxb-", "SKIP this", "SK-1234", "hf_123", "AIzaTooShort", "ya29.short",
        "desk_test_value", "AccountKey=tooShort==", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        // https://accounts.google.com/.well-known/openid-configuration
        #"{"issuer":"https://accounts.google.com","#
            + #""authorization_endpoint":"https://accounts.google.com/o/oauth2/v2/auth","#
            + #""device_authorization_endpoint":"https://oauth2.googleapis.com/device/code","#
            + #""token_endpoint":"https://oauth2.googleapis.com/token","#
            + #""token_endpoint_auth_methods_supported":["client_secret_post","client_secret_basic"],"#
            + #""grant_types_supported":["authorization_code","refresh_token","#
            + #""urn:ietf:params:oauth:grant-type:device_code","urn:ietf:params:oauth:grant-type:jwt-bearer"]}"#,
        // RFC 6749 §4.1.1 authorization request and §5.2 error response.
        "GET /authorize?response_type=code&client_id=s6BhdRkqt3&state=xyz"
            + "&redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb HTTP/1.1",
        #"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh "#
            + #"token has expired due to inactivity."}"#,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ])
    func noTokenInText(_ text: String) {
        #expect(scan(text).isEmpty, "\(scan(text).map(\.id))")
    }
}

@Suite struct PEMBlockTests {
    static let body =
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
        + "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu"

    @Test(arguments: [
        "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK",
    ])
    func wholeBlockIsMatched(_ label: String) {
        let block = "-----BEGIN \(label)-----\n\(Self.body)\n-----END \(label)-----"
        let text = "key file:\n\(block)\ntrailer"
        #expect(scan(text).map(\.id) == ["private-key"])
        #expect(scan(text).first?.range == offset(of: block, in: text))
    }

    @Test func jsonEscapedBlockIsMatchedWhole() {
        let escaped =
            "-----BEGIN PRIVATE KEY-----\\n" + Self.body.replacingFirst("\n", with: "\\n")
            + "\\n-----END PRIVATE KEY-----\\n"
        let text = #"{"cert":"-----END CERTIFICATE-----\n"# + escaped + #"","x":1}"#
        let block = String(escaped.dropLast(2))
        #expect(scan(text).first?.range == offset(of: block, in: text))
    }

    @Test func encryptedLegacyHeadersAreInsideTheBlock() {
        let block =
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
            + "DEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n" + Self.body + "\n-----END RSA PRIVATE KEY-----"
        #expect(scan(block).first?.range == 0..<block.utf8.count)
    }

    /// A truncated body has no END line: everything that can belong to the block is covered, up to the quote.
    @Test func truncatedBlockRunsToTheEndOfTheBody() {
        let head = "-----BEGIN PRIVATE KEY-----\\n" + Self.body.replacingFirst("\n", with: "\\n")
        let text = #"{"key":""# + head + #""}"#
        #expect(scan(text).first?.range == offset(of: head, in: text))
    }
}

private extension String {
    /// The text with the first `target` at or after the end of `marker` replaced.
    func replacingFirst(_ target: String, with replacement: String, after marker: String = "") -> String {
        let t = Array(utf8)
        func find(_ needle: [UInt8], from: Int) -> Int? {
            guard !needle.isEmpty, t.count >= needle.count, from <= t.count - needle.count else { return nil }
            return (from...(t.count - needle.count)).first { Array(t[$0..<($0 + needle.count)]) == needle }
        }
        let skip = Array(marker.utf8), find1 = Array(target.utf8)
        let from = skip.isEmpty ? 0 : (find(skip, from: 0).map { $0 + skip.count } ?? 0)
        guard let i = find(find1, from: from) else { return self }
        return String(decoding: t[..<i] + Array(replacement.utf8) + t[(i + find1.count)...], as: UTF8.self)
    }
}
