import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import AuthtapCA

@Suite struct CATests {
    let now = Date()

    @Test(arguments: ["idp.example.test", "127.0.0.1", "::1"])
    func leafFollowsTheRules(_ host: String) async throws {
        let (cert, key) = try CertificateAuthority.generate(now: now)
        let ca = try CertificateAuthority(certificate: cert, key: key)
        let leaf = try ca.issueLeaf(for: host, now: now)
        #expect(
            abs(leaf.notValidBefore.timeIntervalSince(now.addingTimeInterval(-2 * 86400))) < 2, "backdated two days")
        #expect(leaf.notValidAfter.timeIntervalSince(now) <= 199 * 86400 + 1, "valid at most 199 days")
        #expect(leaf.issuer == cert.subject)
        let aki = try leaf.extensions.authorityKeyIdentifier?.keyIdentifier
        let ski = try cert.extensions.subjectKeyIdentifier?.keyIdentifier
        #expect(aki != nil && aki == ski, "AKI = CA's SKI")
        let sans = UpstreamTrust.subjectAlternativeNames(leaf)
        #expect(UpstreamTrust.matches(host: host, names: sans))
        if IPAddress.bytes(host) != nil {
            #expect(
                try leaf.extensions.subjectAlternativeNames?.contains {
                    if case .ipAddress = $0 { return true } else { return false }
                } == true)
        } else {
            #expect(sans == [host])
        }
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        let verdict = await UpstreamTrust(extraAnchors: [cert], includeSystem: false).verify(chain: [leaf], host: host)
        #expect(verdict == .trusted)
    }

    @Test func verificationReasons() async throws {
        let (cert, key) = try CertificateAuthority.generate(now: now)
        let ca = try CertificateAuthority(certificate: cert, key: key)
        let trust = UpstreamTrust(extraAnchors: [cert], includeSystem: false)
        let leaf = try ca.issueLeaf(for: "a.test", now: now)
        #expect(
            await trust.verify(chain: [leaf], host: "b.test")
                == .failed(.hostnameMismatch, "certificate names a.test, not b.test"))
        if case .failed(let reason, _) = await trust.verify(
            chain: [leaf], host: "a.test", now: now.addingTimeInterval(400 * 86400))
        {
            #expect(reason == .expired)
        } else {
            Issue.record("expected expired")
        }
        if case .failed(let reason, _) = await trust.verify(
            chain: [leaf], host: "a.test", now: now.addingTimeInterval(-30 * 86400))
        {
            #expect(reason == .notYetValid)
        } else {
            Issue.record("expected not yet valid")
        }
        let stranger = UpstreamTrust(extraAnchors: [], includeSystem: false)
        if case .failed(let reason, _) = await stranger.verify(chain: [leaf], host: "a.test") {
            #expect(reason == .untrustedIssuer)
        } else {
            Issue.record("expected untrusted")
        }
    }

    @Test func wildcardMatching() {
        #expect(UpstreamTrust.matches(host: "a.example.com", names: ["*.example.com"]))
        #expect(!UpstreamTrust.matches(host: "a.b.example.com", names: ["*.example.com"]))
        #expect(!UpstreamTrust.matches(host: "example.com", names: ["*.example.com"]))
    }

    @Test func certsDirectoryCreatesOncePerInstallWithPrivateModes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("authtap-certs-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let certs = CertsDirectory(path: dir)
        let first = try certs.loadOrCreateCA()
        let fpKey = try certs.loadOrCreateFingerprintKey()
        for path in [certs.caKeyPath, certs.fingerprintKeyPath] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
            #expect(mode == 0o600, "\(path) mode \(String(mode, radix: 8))")
        }
        let second = try certs.loadOrCreateCA()
        #expect(first.certificate == second.certificate)
        #expect(try certs.loadOrCreateFingerprintKey() == fpKey && fpKey.count == 32)
        let bundle = try String(contentsOfFile: certs.bundlePath, encoding: .utf8)
        #expect(bundle.contains(first.certificatePEM))
        let other = try CertsDirectory(path: dir + "-other").loadOrCreateCA()
        defer { try? FileManager.default.removeItem(atPath: dir + "-other") }
        #expect(other.certificate != first.certificate)
    }
}
