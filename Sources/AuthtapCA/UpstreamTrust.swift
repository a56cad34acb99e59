import AuthtapModel
import Foundation
import SwiftASN1
import X509

/// Verifies upstream certificate chains and says *why* one fails, from structured facts
/// (validity dates, SAN entries, chain building), never from error text.
public struct UpstreamTrust: Sendable {
    public let roots: [Certificate]

    public enum Verdict: Sendable, Equatable {
        case trusted
        case failed(TLSFailureReason, String)
    }

    /// System roots (when `includeSystem`) plus `extraAnchors`.
    public init(extraAnchors: [Certificate], includeSystem: Bool = true) {
        var roots = extraAnchors
        if includeSystem,
            let path = CertsDirectory.systemBundleCandidates.first(where: { FileManager.default.fileExists(atPath: $0) }
            ),
            let system = try? loadPEMCertificates(path: path)
        {
            roots += system
        }
        self.roots = roots
    }

    public func verify(chain: [Certificate], host: String, now: Date = Date()) async -> Verdict {
        guard let leaf = chain.first else { return .failed(.other, "the server sent no certificate") }
        if now < leaf.notValidBefore {
            return .failed(
                .notYetValid, "certificate for \(leaf.subject) is not valid before \(iso(leaf.notValidBefore))")
        }
        if now > leaf.notValidAfter {
            return .failed(.expired, "certificate for \(leaf.subject) expired at \(iso(leaf.notValidAfter))")
        }
        let names = Self.subjectAlternativeNames(leaf)
        if !Self.matches(host: host, names: names) {
            return .failed(
                .hostnameMismatch,
                "certificate names \(names.isEmpty ? "no subject alternative names" : names.joined(separator: ", ")), not \(host)"
            )
        }
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy()
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(chain.dropFirst()))
        switch result {
        case .validCertificate:
            return .trusted
        case .couldNotValidate:
            if let expired = chain.dropFirst().first(where: { now > $0.notValidAfter }) {
                return .failed(.expired, "intermediate \(expired.subject) expired at \(iso(expired.notValidAfter))")
            }
            return .failed(.untrustedIssuer, "issuer \(leaf.issuer) is not trusted (no chain to a trusted root)")
        }
    }

    public static func subjectAlternativeNames(_ cert: Certificate) -> [String] {
        guard let sans = try? cert.extensions.subjectAlternativeNames else { return [] }
        return sans.compactMap { name in
            switch name {
            case .dnsName(let dns): return dns
            case .ipAddress(let octets): return ipString(Array(octets.bytes))
            default: return nil
            }
        }
    }

    static func matches(host rawHost: String, names: [String]) -> Bool {
        let host = rawHost.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if let ip = IPAddress.bytes(host) {
            return names.contains { IPAddress.bytes($0) == ip }
        }
        return names.contains { name in
            let n = name.lowercased()
            if n == host { return true }
            if n.hasPrefix("*.") {
                let suffix = n.dropFirst(1)
                guard host.hasSuffix(suffix) else { return false }
                let label = host.dropLast(suffix.count)
                return !label.isEmpty && !label.contains(".")
            }
            return false
        }
    }

    static func ipString(_ bytes: [UInt8]) -> String? {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16 {
            var out = [String]()
            for i in stride(from: 0, to: 16, by: 2) {
                out.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16))
            }
            return out.joined(separator: ":")
        }
        return nil
    }

    /// A readable summary for the exchange record.
    public static func summary(_ cert: Certificate) -> CertificateSummary {
        CertificateSummary(
            subject: cert.subject.description, issuer: cert.issuer.description,
            sans: subjectAlternativeNames(cert), notBefore: cert.notValidBefore, notAfter: cert.notValidAfter,
            serial: cert.serialNumber.description)
    }

    private func iso(_ d: Date) -> String { ISO8601DateFormatter().string(from: d) }
}
