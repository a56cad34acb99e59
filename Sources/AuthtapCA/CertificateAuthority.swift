import Crypto
import Foundation
import SwiftASN1
import X509

/// Errors of the CA module.
public struct CAError: Error, CustomStringConvertible {
    private enum Code { case unreadable, unwritable, badKey, badCertificate }
    private let code: Code
    public let description: String
    public static func unreadable(_ path: String, _ why: String) -> CAError {
        .init(code: .unreadable, description: "cannot read \(path): \(why)")
    }
    public static func unwritable(_ path: String, _ why: String) -> CAError {
        .init(code: .unwritable, description: "cannot write \(path): \(why)")
    }
    public static func badKey(_ path: String) -> CAError {
        .init(code: .badKey, description: "\(path) does not hold a P-256 private key in PEM")
    }
    public static func badCertificate(_ path: String) -> CAError {
        .init(code: .badCertificate, description: "\(path) does not hold a PEM certificate")
    }
}

/// The local certificate authority: created once under `certs/`, key at mode 0600.
/// Issues leaves the way mitmproxy does: backdated 2 days, valid ≤ 199 days,
/// AKI = CA's SKI, SAN as a DNS name or an IP address, one shared leaf key.
public final class CertificateAuthority: Sendable {
    public let certificate: Certificate
    public let certificatePEM: String
    private let key: P256.Signing.PrivateKey
    /// One key for every leaf (as mitmproxy does): issuing a leaf is one signature, no keygen.
    public let leafKey: P256.Signing.PrivateKey
    private let subjectKeyID: ArraySlice<UInt8>

    public init(certificate: Certificate, key: P256.Signing.PrivateKey, leafKey: P256.Signing.PrivateKey = .init())
        throws
    {
        self.certificate = certificate
        self.key = key
        self.leafKey = leafKey
        self.certificatePEM = try certificate.serializeAsPEM().pemString
        self.subjectKeyID =
            (try? certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
    }

    /// A new self-signed CA.
    public static func generate(commonName: String = "authtap local CA", now: Date = Date()) throws -> (
        Certificate, P256.Signing.PrivateKey
    ) {
        let key = P256.Signing.PrivateKey()
        let certKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName("authtap")
            CommonName("\(commonName) \(String(UInt32.random(in: 0...UInt32.max), radix: 16))")
        }
        let cert = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: certKey.publicKey,
            notValidBefore: now.addingTimeInterval(-2 * 86400),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: certKey.publicKey)
            },
            issuerPrivateKey: certKey
        )
        return (cert, key)
    }

    /// A leaf for `host` (DNS name or IP literal), signed by this CA.
    public func issueLeaf(for host: String, now: Date = Date()) throws -> Certificate {
        let leafPublic = Certificate.PrivateKey(leafKey).publicKey
        let san: GeneralName
        if let ip = IPAddress.bytes(host) {
            san = .ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip)))
        } else {
            san = .dnsName(host)
        }
        let notAfter = min(now.addingTimeInterval(199 * 86400), certificate.notValidAfter)
        let cn = String(host.prefix(64))
        return try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: leafPublic,
            notValidBefore: now.addingTimeInterval(-2 * 86400),
            notValidAfter: notAfter,
            issuer: certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("authtap")
                CommonName(cn)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([san])
                AuthorityKeyIdentifier(keyIdentifier: subjectKeyID)
                SubjectKeyIdentifier(hash: leafPublic)
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
    }
}

/// IP literal parsing without a resolver.
public enum IPAddress {
    public static func bytes(_ text: String) -> [UInt8]? {
        var host = text
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
