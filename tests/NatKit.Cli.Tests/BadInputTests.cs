using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NatKit.Cli.Tests;

/// <summary>Every bad input an operator reported: each verb exits 2 with one sentence that names the flag (or the
/// policy file's key) and the fix, and no stack trace or .NET name.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-badinput-").FullName;

    public BadInputTests()
    {
        File.WriteAllText(Path.Combine(_dir, "bogus.json"), "{\"mapping\":\"bogus\"}");
        File.WriteAllText(Path.Combine(_dir, "typo.json"), "{\"mappin\":\"endpoint-independent\"}");
        File.WriteAllText(Path.Combine(_dir, "old.json"), "{\"Mapping\":\"EndpointIndependent\"}");
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=natkit-test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(Path.Combine(_dir, "cert.pem"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_dir, "key.pem"), rsa.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(_dir, "garbage.pfx"), "not a certificate");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string F(string name) => Path.Combine(_dir, name);

    /// <summary>A free port unless the case is about --listen itself (a refused flag must stop start-up before
    /// any bind, but a mistake in the test should not hit a port in use).</summary>
    private static string[] Listen(string flag) => flag == "--listen" ? [] : ["--listen", "127.0.0.1:0"];

    private static readonly string[] Gateway = ["gateway", "run", "--inside", "nkt-in", "--outside", "nkt-out", "--external", "203.0.113.1"];

    [Theory]
    [InlineData("bogus.json", "--policy bogus.json: line 1: mapping: 'bogus' is not one of endpoint-independent, address-dependent, address-and-port-dependent.")]
    [InlineData("typo.json", "--policy typo.json: line 1: mappin: unknown NAT knob 'mappin'; known knobs: mapping,")]
    [InlineData("old.json", "--policy old.json: line 1: Mapping: unknown NAT knob 'Mapping'")]
    [InlineData("missing.json", "--policy missing.json: cannot be read")]
    public async Task GatewayPolicy_Refused_NamingTheKey(string file, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync([.. Gateway, "--policy", F(file)]), expected);

    [Fact]
    public async Task GatewayPreset_Unknown_ListsThePresets() =>
        Natkit.AssertRefused(await Natkit.RunAsync([.. Gateway, "--preset", "cone"]), "--preset cone: no such preset; use one of ");

    [Theory]
    [InlineData("--advertise", "2001:db8::5", "--advertise 2001:db8::5: must be an IPv4 address because --listen is IPv4")]
    [InlineData("--alternate", "::2", "--alternate ::2: must be an IPv4 address like --listen")]
    [InlineData("--alternate", "127.0.0.1", "--alternate 127.0.0.1: must be a second address of this host, not the --listen address.")]
    [InlineData("--advertise-alternate", "192.0.2.2", "--advertise-alternate 192.0.2.2: needs --alternate")]
    [InlineData("--alternate-port", "-1", "--alternate-port -1: must be 0 (primary port + 1) or more.")]
    [InlineData("--rate-limit", "-1", "--rate-limit -1: must be 0 (unlimited) or more.")]
    [InlineData("--realm", "example.org", "--realm example.org: long-term credentials need at least one --user NAME:PASSWORD.")]
    [InlineData("--listen", "127.0.0.1:99999", "--listen 127.0.0.1:99999: port 99999 is out of range; use 1-65535 (0 for any free port).")]
    [InlineData("--listen", "[::1]:70000", "--listen [::1]:70000: port 70000 is out of range")]
    [InlineData("--listen", "localhost", "--listen localhost: 'localhost' is not an IP address")]
    [InlineData("--user", "alice", "--user alice: expected NAME:PASSWORD")]
    [InlineData("--max-tcp-connections", "0", "--max-tcp-connections 0: must be a positive whole number.")]
    [InlineData("--rto", "5", "Unrecognized command or argument '--rto'")]
    public async Task StunServe_Refused_NamingTheFlag(string flag, string value, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync(["stun", "serve", .. Listen(flag), flag, value]), expected);

    [Fact]
    public async Task BenchUtp_NegativeSocketBuffer_NamesTheFlag() =>
        Natkit.AssertRefused(await Natkit.RunAsync("bench", "utp", "--socket-buffer", "-1"),
            "--socket-buffer -1: must be 0 (the system's default) or more.");

    [Fact]
    public async Task StunServe_TlsKeyWithoutCert_NamesBoth() =>
        Natkit.AssertRefused(await Natkit.RunAsync("stun", "serve", "--tls-key", F("key.pem")),
            $"--tls-key {F("key.pem")}: needs --tls-cert, the certificate this key belongs to.");

    [Fact]
    public async Task StunServe_PemCertWithoutKey_AsksForTlsKey() =>
        Natkit.AssertRefused(await Natkit.RunAsync("stun", "serve", "--tls-cert", F("cert.pem")),
            $"--tls-cert {F("cert.pem")}: a PEM certificate needs its private key; give it with --tls-key KEY.pem.");

    [Fact]
    public async Task StunServe_UnreadableCert_SaysWhatWasTried_NotJustAsn1() =>
        Natkit.AssertRefused(await Natkit.RunAsync("stun", "serve", "--tls-cert", F("garbage.pfx")),
            $"--tls-cert {F("garbage.pfx")}: cannot be read as a PKCS#12 (.pfx) file without a password");

    [Fact]
    public async Task StunServe_NoTransportLeft_SaysWhatToDo() =>
        Natkit.AssertRefused(await Natkit.RunAsync("stun", "serve", "--no-udp", "--no-tcp"),
            "--no-udp with --no-tcp leaves nothing to serve: drop one, or add --tls-cert.");

    [Theory]
    [InlineData("--external-ip", "2001:db8::1", "--external-ip 2001:db8::1: must be an IPv4 address: it is announced as the relayed address of IPv4 allocations")]
    [InlineData("--relay", "::1", "--relay ::1: must be an IPv4 address")]
    [InlineData("--relay6", "127.0.0.1", "--relay6 127.0.0.1: must be an IPv6 address")]
    [InlineData("--ports", "60000-50000", "--ports 60000-50000: the first port must not be above the second; write it 50000-60000.")]
    [InlineData("--ports", "50000-70000", "--ports 50000-70000: port 70000 is out of range; use 1-65535.")]
    [InlineData("--tls", "127.0.0.1:0", "--tls needs --tls-cert: a PKCS#12 file, or a PEM certificate with --tls-key.")]
    [InlineData("--listen", "127.0.0.1:99999", "--listen 127.0.0.1:99999: port 99999 is out of range")]
    [InlineData("--tcp", "[::1", "--tcp [::1: expected ADDRESS[:PORT]")]
    [InlineData("--allow", "10.0.0.0/33", "--allow 10.0.0.0/33: expected CIDR[:PORT[-PORT]]")]
    [InlineData("--max-allocations", "0", "--max-allocations 0: must be a positive whole number.")]
    [InlineData("--bandwidth", "-5", "--bandwidth -5: must be 0 (unlimited) or more.")]
    [InlineData("--max-lifetime", "10", "--max-lifetime 10: must be at least 600 seconds")]
    [InlineData("--realm", "", "--realm '': must be 1-127 characters.")]
    [InlineData("--max-allocations", "many", "--max-allocations many: expected a whole number.")]
    public async Task TurnServe_Refused_NamingTheFlag(string flag, string value, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync(["turn", "serve", "--user", "a:b", .. Listen(flag), flag, value]), expected);

    [Fact]
    public async Task TurnServe_WithoutCredentials_RefusesToBeAnOpenRelay() =>
        Natkit.AssertRefused(await Natkit.RunAsync("turn", "serve", "--listen", "127.0.0.1:0"),
            "turn serve needs --user NAME:PASSWORD or --secret SECRET: it does not run as an open relay.");

    [Theory]
    [InlineData("--listen", "127.0.0.1:99999", "--listen 127.0.0.1:99999: port 99999 is out of range")]
    [InlineData("--socks", "[::1]1080", "--socks [::1]1080: expected ADDRESS[:PORT], with an IPv6 address in brackets like [::1]:3478.")]
    [InlineData("--allow", "lan", "--allow lan: not a CIDR network")]
    [InlineData("--auth", "alice", "--auth: expected USER:PASSWORD")]
    [InlineData("--max-connections", "0", "--max-connections 0: must be a positive whole number.")]
    [InlineData("--max-header-bytes", "10", "--max-header-bytes 10: must be 1024 (1 KiB) to 1048576 (1 MiB).")]
    [InlineData("--connect-ports", "443,https", "--connect-ports: 'https' is not a port")]
    public async Task ProxyServe_Refused_NamingTheFlag(string flag, string value, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync(["proxy", "serve", .. Listen(flag), flag, value]), expected);

    [Theory]
    [InlineData("stun", "probe", "[::1]:99999", "[::1]:99999: bad port")]
    [InlineData("lab", "run", "--seed", "--seed abc: expected a whole number. See 'natkit lab run --help'.")]
    public async Task ProbeAndLab_Refused(string verb, string sub, string value, string expected)
    {
        string[] args = sub == "run" ? [verb, sub, "two-homes", value, "abc"] : [verb, sub, value];
        Natkit.AssertRefused(await Natkit.RunAsync(args), expected);
    }
}
