/// Bytes a token body may hold.
public struct ByteClass: Sendable {
    private let table: [Bool]
    public init(_ allowed: String) {
        var table = [Bool](repeating: false, count: 256)
        var previous: UInt8? = nil
        var range = false
        for c in allowed.utf8 {
            if c == UInt8(ascii: "~") { range = true; continue }
            if range, let p = previous { for x in p...c { table[Int(x)] = true } } else { table[Int(c)] = true }
            range = false
            previous = c
        }
        self.table = table
    }
    public func contains(_ c: UInt8) -> Bool { table[Int(c)] }

    public static let alnum = ByteClass("A~Za~z0~9")
    public static let alnumUnderscore = ByteClass("A~Za~z0~9_")
    public static let base64URL = ByteClass("A~Za~z0~9_-")
    public static let upperAlnum = ByteClass("A~Z0~9")
    public static let hex = ByteClass("a~f0~9")
    public static let googleOAuth = ByteClass("A~Za~z0~9_-")
}

/// One published credential format: a literal prefix, then a body of allowed bytes.
public struct TokenFormat: Sendable {
    public let id: String
    public let prefixes: [String]
    public let body: ByteClass
    public let minBody: Int, maxBody: Int
    public let source: String
    public let example: String
}

public enum TokenFormats {
    static let gitleaks = "gitleaks config/gitleaks.toml [[rules]] id="

    public static let all: [TokenFormat] = [
        TokenFormat(id: "github-pat", prefixes: ["ghp_"], body: .alnum, minBody: 36, maxBody: 36,
                    source: gitleaks + "github-pat", example: "ghp_" + String(repeating: "Ab1Cd2Ef3G", count: 4).prefix(36)),
        TokenFormat(id: "github-oauth", prefixes: ["gho_"], body: .alnum, minBody: 36, maxBody: 36,
                    source: gitleaks + "github-oauth", example: "gho_" + String(repeating: "Zx9Yw8Vu7T", count: 4).prefix(36)),
        TokenFormat(id: "github-app-token", prefixes: ["ghu_", "ghs_"], body: .alnum, minBody: 36, maxBody: 36,
                    source: gitleaks + "github-app-token", example: "ghs_" + String(repeating: "Qr5St6Uv7W", count: 4).prefix(36)),
        TokenFormat(id: "github-refresh-token", prefixes: ["ghr_"], body: .alnum, minBody: 36, maxBody: 36,
                    source: gitleaks + "github-refresh-token",
                    example: "ghr_" + String(repeating: "Mn3Op4Qr5S", count: 4).prefix(36)),
        TokenFormat(id: "github-fine-grained-pat", prefixes: ["github_pat_"], body: .alnumUnderscore, minBody: 82,
                    maxBody: 82, source: gitleaks + "github-fine-grained-pat",
                    example: "github_pat_" + String(repeating: "Ab1_Cd2Ef3", count: 9).prefix(82)),
        TokenFormat(id: "gitlab-pat", prefixes: ["glpat-"], body: .base64URL, minBody: 20, maxBody: 20,
                    source: gitleaks + "gitlab-pat", example: "glpat-" + "Xy9-Zw8_Vu7Ts6Rq5Po4"),
        TokenFormat(id: "gitlab-runner-token", prefixes: ["glrt-"], body: .base64URL, minBody: 20, maxBody: 20,
                    source: gitleaks + "gitlab-runner-authentication-token", example: "glrt-" + "Ab1-Cd2_Ef3Gh4Ij5Kl6"),
        TokenFormat(id: "slack-token", prefixes: ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xapp-"],
                    body: ByteClass("A~Za~z0~9-"), minBody: 10, maxBody: 250,
                    source: gitleaks + "slack-bot-token, slack-user-token, slack-app-token",
                    example: "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
        TokenFormat(id: "aws-access-key-id", prefixes: ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"], body: .upperAlnum,
                    minBody: 16, maxBody: 17, source: gitleaks + "aws-access-token", example: "AKIAQ3EGRWXYZ7KLM2NP"),
        TokenFormat(id: "gcp-api-key", prefixes: ["AIza"], body: .base64URL, minBody: 35, maxBody: 35,
                    source: gitleaks + "gcp-api-key", example: "AIzaSyDq7Xk3-Lm9Np2Qr5St8Uv1Wx4Yz6Ab0Cd"),
        TokenFormat(id: "google-oauth-access-token", prefixes: ["ya29."], body: .googleOAuth, minBody: 20, maxBody: 2048,
                    source: "Google Identity: OAuth 2.0 access tokens start with ya29.",
                    example: "ya29.a0AfB_byC1dE2fG3hI4jK5lM6nO7pQ8rS9tU0vW"),
        TokenFormat(id: "stripe-access-token", prefixes: ["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
                    body: .alnum, minBody: 10, maxBody: 99, source: gitleaks + "stripe-access-token",
                    example: "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
        TokenFormat(id: "npm-access-token", prefixes: ["npm_"], body: .alnum, minBody: 36, maxBody: 36,
                    source: gitleaks + "npm-access-token", example: "npm_" + String(repeating: "Kl4Mn5Op6Q", count: 4).prefix(36)),
        TokenFormat(id: "pypi-upload-token", prefixes: ["pypi-AgEIcHlwaS5vcmc"], body: .base64URL, minBody: 50,
                    maxBody: 1000, source: gitleaks + "pypi-upload-token",
                    example: "pypi-AgEIcHlwaS5vcmc" + String(repeating: "Qw3Er4Ty5U", count: 6)),
        TokenFormat(id: "openai-api-key", prefixes: ["sk-proj-", "sk-svcacct-", "sk-admin-"], body: .base64URL,
                    minBody: 40, maxBody: 200, source: gitleaks + "openai-api-key",
                    example: "sk-proj-" + String(repeating: "Ab3Cd4Ef5G", count: 6)),
        TokenFormat(id: "huggingface-access-token", prefixes: ["hf_"], body: .alnum, minBody: 34, maxBody: 34,
                    source: gitleaks + "huggingface-access-token",
                    example: "hf_" + String(repeating: "Rs7Tu8Vw9X", count: 4).prefix(34)),
        TokenFormat(id: "sendgrid-api-token", prefixes: ["SG."], body: ByteClass("A~Za~z0~9_.-"), minBody: 66,
                    maxBody: 66, source: gitleaks + "sendgrid-api-token",
                    example: "SG." + String(repeating: "Ab1Cd2Ef3G", count: 7).prefix(22) + "."
                        + String(repeating: "Hi4Jk5Lm6N", count: 5).prefix(43)),
        TokenFormat(id: "shopify-token", prefixes: ["shpat_", "shpss_", "shpca_", "shppa_"], body: .hex, minBody: 32,
                    maxBody: 32, source: gitleaks + "shopify-access-token, shopify-shared-secret",
                    example: "shpat_" + "0123456789abcdef0123456789abcdef"),
        TokenFormat(id: "digitalocean-token", prefixes: ["dop_v1_", "doo_v1_", "dor_v1_"], body: .hex, minBody: 64,
                    maxBody: 64, source: gitleaks + "digitalocean-pat, digitalocean-access-token",
                    example: "dop_v1_" + String(repeating: "0123456789abcdef", count: 4)),
        TokenFormat(id: "square-token", prefixes: ["sq0atp-", "sq0csp-", "EAAA"], body: .base64URL, minBody: 22,
                    maxBody: 60, source: gitleaks + "square-access-token, square-secret",
                    example: "sq0atp-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7O"),
        TokenFormat(id: "atlassian-api-token", prefixes: ["ATATT3"], body: ByteClass("A~Za~z0~9_=-"), minBody: 186,
                    maxBody: 186, source: gitleaks + "atlassian-api-token",
                    example: "ATATT3" + String(repeating: "xFfGF0T1Yz", count: 19).prefix(186)),
        TokenFormat(id: "azure-storage-account-key", prefixes: ["AccountKey="], body: ByteClass("A~Za~z0~9+/="),
                    minBody: 86, maxBody: 200, source: "Azure Storage connection strings (AccountKey=base64, 64 bytes)",
                    example: "AccountKey=" + String(repeating: "Zm9vYmFy", count: 11) + "=="),
        TokenFormat(id: "twilio-api-key", prefixes: ["SK"], body: .hex, minBody: 32, maxBody: 32,
                    source: gitleaks + "twilio-api-key", example: "SK" + "0123456789abcdef0123456789abcdef"),
        TokenFormat(id: "doppler-api-token", prefixes: ["dp.pt."], body: .alnum, minBody: 43, maxBody: 43,
                    source: gitleaks + "doppler-api-token",
                    example: "dp.pt." + String(repeating: "Ab1Cd2Ef3G", count: 5).prefix(43)),
        TokenFormat(id: "postman-api-token", prefixes: ["PMAK-"], body: ByteClass("a~f0~9-"), minBody: 59,
                    maxBody: 59, source: gitleaks + "postman-api-token",
                    example: "PMAK-" + "0123456789abcdef01234567-0123456789abcdef0123456789abcdef01"),
    ]

    static let pemBegin = Array("-----BEGIN ".utf8)
    static let pemPrivate = Array("PRIVATE KEY-----".utf8)
    static let pemEnd = Array("-----END ".utf8)

    /// Every match in `bytes`: the byte range of the whole token (prefix included) and the rule.
    public static func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> [(range: Range<Int>, format: TokenFormat)] {
        var hits: [(range: Range<Int>, format: TokenFormat)] = []
        let n = bytes.count
        var i = 0
        while i < n {
            let c = bytes[i]
            if c == UInt8(ascii: "-"), let pem = pemBlock(bytes, at: i) {
                hits.append((i..<pem, pemFormat))
                i = pem
                continue
            }
            guard firstBytes[Int(c)], i == 0 || !Masker.isBase64URL(bytes[i - 1]) else {
                i += 1
                continue
            }
            var matched = false
            for format in all {
                for prefix in format.prefixes where prefix.utf8.first == c && i + prefix.utf8.count <= n {
                    guard zip(prefix.utf8, bytes[i...]).allSatisfy({ $0 == $1 }) else { continue }
                    var end = i + prefix.utf8.count
                    while end < n, format.body.contains(bytes[end]) { end += 1 }
                    let length = end - i - prefix.utf8.count
                    if length >= format.minBody, length <= format.maxBody {
                        hits.append((i..<end, format))
                        i = end
                        matched = true
                        break
                    }
                }
                if matched { break }
            }
            if !matched { i += 1 }
        }
        return hits
    }

    static let pemFormat = TokenFormat(
        id: "private-key", prefixes: ["-----BEGIN"], body: .alnum, minBody: 0, maxBody: 0,
        source: gitleaks + "private-key",
        example: "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----")

    /// `-----BEGIN … PRIVATE KEY-----` through its END line (or the end of the text when it is cut).
    static func pemBlock(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        guard i + pemBegin.count + pemPrivate.count <= b.count, b[i..<(i + pemBegin.count)].elementsEqual(pemBegin)
        else { return nil }
        var k = i + pemBegin.count
        let lineEnd = min(b.count, k + 40)
        while k + pemPrivate.count <= lineEnd, !b[k..<(k + pemPrivate.count)].elementsEqual(pemPrivate) { k += 1 }
        guard k + pemPrivate.count <= lineEnd else { return nil }
        k += pemPrivate.count
        while k + pemEnd.count <= b.count {
            if b[k..<(k + pemEnd.count)].elementsEqual(pemEnd) {
                var e = k + pemEnd.count
                while e < b.count, b[e] != UInt8(ascii: "\n"), b[e] != UInt8(ascii: "\"") { e += 1 }
                return e
            }
            k += 1
        }
        return b.count
    }

    static let firstBytes: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for format in all { for prefix in format.prefixes { if let c = prefix.utf8.first { table[Int(c)] = true } } }
        return table
    }()
}

/// Random-looking runs: what detect-secrets' high-entropy plugins flag, scaled to short runs.
public enum EntropySweep {
    public static let minimumLength = 20

    public static func highEntropyRuns(_ bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var i = 0
        let n = bytes.count
        while i < n {
            guard Masker.isBase64URL(bytes[i]) || bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "/") else {
                i += 1
                continue
            }
            var end = i
            while end < n, Masker.isBase64URL(bytes[end]) || bytes[end] == UInt8(ascii: "+")
                || bytes[end] == UInt8(ascii: "/") { end += 1 }
            while end < n, bytes[end] == UInt8(ascii: "=") { end += 1 }
            if end - i >= minimumLength, !isJWTPart(bytes, i, end) {
                if looksRandom(bytes[i..<end]) {
                    runs.append(i..<end)
                } else {
                    // A path or a list around a token (`/api/TOKEN/profile`): its segments, each on its own.
                    var start = i
                    for k in i...end where k == end || bytes[k] == UInt8(ascii: "/") || bytes[k] == UInt8(ascii: "+") {
                        if k - start >= minimumLength, !isJWTPart(bytes, start, k), looksRandom(bytes[start..<k]) {
                            runs.append(start..<k)
                        }
                        start = k + 1
                    }
                }
            }
            i = end
        }
        return runs
    }

    static func isJWTPart(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        end - start >= 3 && b[start] == UInt8(ascii: "e") && b[start + 1] == UInt8(ascii: "y")
            && b[start + 2] == UInt8(ascii: "J")
    }

    static func looksRandom(_ run: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        var upper = 0, lower = 0, digit = 0, slash = 0
        for c in run {
            if c >= 0x41 && c <= 0x5A { upper += 1 } else if c >= 0x61 && c <= 0x7A { lower += 1 }
            else if c >= 0x30 && c <= 0x39 { digit += 1 } else if c == UInt8(ascii: "/") { slash += 1 }
        }
        // Paths are not secrets: more than one slash in a short run reads as /a/b/c.
        if slash > 1 && run.count < 60 { return false }
        let isHex = upper == 0 && run.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        let h = entropy(run)
        let length = Double(run.count)
        if isHex { return digit > 0 && digit < run.count && h >= min(3.0, 0.62 * log2(length)) }
        let classes = (upper > 0 ? 1 : 0) + (lower > 0 ? 1 : 0) + (digit > 0 ? 1 : 0)
        guard classes >= 2, digit > 0 || (upper > 2 && lower > 2) else { return false }
        return h >= min(4.5, 0.85 * log2(length))
    }

    public static func entropy(_ bytes: some Collection<UInt8>) -> Double {
        var counts = [Int](repeating: 0, count: 256)
        for c in bytes { counts[Int(c)] += 1 }
        let n = Double(bytes.count)
        var h = 0.0
        for count in counts where count > 0 {
            let p = Double(count) / n
            h -= p * log2(p)
        }
        return h
    }

    static func log2(_ x: Double) -> Double { Foundation.log2(x) }
}

import Foundation
