import Crypto
import Foundation
import SwiftASN1
import X509

/// The `certs/` directory: CA certificate and key, the fingerprint key, and a trust bundle
/// (system roots + authtap CA) for `SSL_CERT_FILE`/`REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`.
/// Every secret file is written with mode 0600 and created once per install.
public struct CertsDirectory: Sendable {
    public let path: String
    public var caCertificatePath: String { path + "/authtap-ca.pem" }
    public var caKeyPath: String { path + "/authtap-ca.key" }
    public var fingerprintKeyPath: String { path + "/fingerprint.key" }
    public var bundlePath: String { path + "/ca-bundle.pem" }

    public static let systemBundleCandidates = [
        "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem",
    ]

    public init(path: String) {
        self.path = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
    }

    /// Loads the CA, creating it (and the directory) on first run.
    public func loadOrCreateCA() throws -> CertificateAuthority {
        let fm = FileManager.default
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if fm.fileExists(atPath: caKeyPath), fm.fileExists(atPath: caCertificatePath) {
            let keyPEM = try read(caKeyPath)
            guard let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM) else {
                throw CAError.badKey(caKeyPath)
            }
            guard let cert = try? Certificate(pemEncoded: try read(caCertificatePath)) else {
                throw CAError.badCertificate(caCertificatePath)
            }
            try Self.enforceOwnerOnly(caKeyPath)
            let ca = try CertificateAuthority(certificate: cert, key: key)
            try writeBundleIfNeeded(ca)
            return ca
        }
        let (cert, key) = try CertificateAuthority.generate()
        try Self.writeSecret(key.pemRepresentation, to: caKeyPath)
        try write(try cert.serializeAsPEM().pemString + "\n", to: caCertificatePath, mode: 0o644)
        let ca = try CertificateAuthority(certificate: cert, key: key)
        try writeBundleIfNeeded(ca, force: true)
        return ca
    }

    /// The per-install HMAC key for fingerprints (32 random bytes, mode 0600).
    public func loadOrCreateFingerprintKey() throws -> [UInt8] {
        let fm = FileManager.default
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let data = fm.contents(atPath: fingerprintKeyPath), data.count >= 32 {
            try Self.enforceOwnerOnly(fingerprintKeyPath)
            return Array(data)
        }
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        try Self.writeSecret(Data(key), to: fingerprintKeyPath)
        return key
    }

    /// System roots followed by the authtap CA.
    private func writeBundleIfNeeded(_ ca: CertificateAuthority, force: Bool = false) throws {
        if !force, let existing = try? read(bundlePath), existing.contains(ca.certificatePEM) { return }
        var bundle = ""
        if let system = Self.systemBundleCandidates.lazy.compactMap({ try? String(contentsOfFile: $0, encoding: .utf8) }
        ).first {
            bundle = system.hasSuffix("\n") ? system : system + "\n"
        }
        bundle += "# authtap local CA\n" + ca.certificatePEM + "\n"
        try write(bundle, to: bundlePath, mode: 0o644)
    }

    private func read(_ p: String) throws -> String {
        do { return try String(contentsOfFile: p, encoding: .utf8) } catch { throw CAError.unreadable(p, "\(error)") }
    }

    private func write(_ text: String, to p: String, mode: Int) throws {
        guard
            FileManager.default.createFile(atPath: p, contents: Data(text.utf8), attributes: [.posixPermissions: mode])
        else {
            throw CAError.unwritable(p, String(cString: strerror(errno)))
        }
    }

    /// Writes a secret with O_EXCL-free, umask-proof 0600: create with 0600, then write.
    static func writeSecret(_ text: String, to p: String) throws { try writeSecret(Data(text.utf8), to: p) }
    static func writeSecret(_ data: Data, to p: String) throws {
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CAError.unwritable(p, String(cString: strerror(errno))) }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw CAError.unwritable(p, String(cString: strerror(errno))) }
    }

    static func enforceOwnerOnly(_ p: String) throws {
        var st = stat()
        if stat(p, &st) == 0, st.st_mode & 0o077 != 0 {
            chmod(p, 0o600)
        }
    }
}

/// Parses every certificate in a PEM bundle, skipping those that fail.
public func loadPEMCertificates(path: String) throws -> [Certificate] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw CAError.unreadable(path, "\(error)") }
    let documents = (try? PEMDocument.parseMultiple(pemString: text)) ?? []
    let certs = documents.compactMap { try? Certificate(pemDocument: $0) }
    if certs.isEmpty { throw CAError.badCertificate(path) }
    return certs
}
