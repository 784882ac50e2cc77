using NatKit.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using NatKit.Stun.Server;

namespace NatKit.Cli.Commands;

/// <summary>`natkit stun serve`'s flags checked in the user's words, and the ones `turn serve` and `tunnel serve`
/// share with it (TCP/TLS connection limits, users, the TLS certificate).</summary>
internal sealed partial class StunCommands
{
    private static int Positive(int value, string name) => CliFlags.Positive(value, name);

    /// <summary>The values of the TCP/TLS connection flags that `stun serve` and `turn serve` share
    /// (--max-tcp-connections, --max-tcp-connections-per-ip, --tcp-handshake-timeout, --tcp-idle-timeout),
    /// checked so a mistake names the flag.</summary>
    internal static (int Max, int PerAddress, TimeSpan Handshake, TimeSpan Idle) TcpConnectionFlags(int max,
        int perAddress, int handshakeSeconds, int idleSeconds)
    {
        const int maxSeconds = 49 * 24 * 3600; // a timer's longest due time is 49.7 days
        Positive(max, "--max-tcp-connections");
        if (perAddress < 1 || perAddress > max)
        {
            throw new CliException($"--max-tcp-connections-per-ip must be 1 to --max-tcp-connections ({max})");
        }

        if (handshakeSeconds is < 1 or > maxSeconds)
        {
            throw new CliException($"--tcp-handshake-timeout must be 1 to {maxSeconds} seconds");
        }

        if (idleSeconds is < 1 or > maxSeconds)
        {
            throw new CliException($"--tcp-idle-timeout must be 1 to {maxSeconds} seconds");
        }

        return (max, perAddress, TimeSpan.FromSeconds(handshakeSeconds), TimeSpan.FromSeconds(idleSeconds));
    }

    /// <summary>--user NAME:PASSWORD values (repeatable) and --users-file's lines as one map; shared by the STUN
    /// and TURN servers.</summary>
    internal static Dictionary<string, string> ParseUsers(string[]? values, string? usersFile = null)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var u in values ?? [])
        {
            var (name, password) = ParseUser(u);
            map[name] = password;
        }

        if (usersFile is not null)
        {
            foreach (var (name, password) in CliConfig.ReadUsers(usersFile, "--users-file"))
            {
                map[name] = password;
            }
        }

        return map;
    }

    /// <summary>One --user NAME:PASSWORD value.</summary>
    internal static (string Name, string Password) ParseUser(string text)
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon > 0
            ? (text[..colon], text[(colon + 1)..])
            : throw new CliException($"--user {text}: expected NAME:PASSWORD");
    }

    /// <summary>What StunServerOptions.Validate would refuse, said in flags: run before the server starts.</summary>
    internal static void CheckServeFlags(StunServerOptions o)
    {
        var family = o.Primary.AddressFamily;
        var listen = $"--listen is {CliFlags.Family(family)}";
        if (o.AlternateAddress is { } alt)
        {
            if (alt.AddressFamily != family)
            {
                throw new CliException($"--alternate {alt}: must be an {CliFlags.Family(family)} address like --listen ({o.Primary.Address}); RFC 5780 tests need both of one family.");
            }

            if (alt.Equals(o.Primary.Address))
            {
                throw new CliException($"--alternate {alt}: must be a second address of this host, not the --listen address.");
            }
        }

        if (o.AdvertisedPrimaryAddress is { } adv && adv.AddressFamily != family)
        {
            throw new CliException($"--advertise {adv}: must be an {CliFlags.Family(family)} address because {listen}; it is the public address of --listen.");
        }

        if (o.AdvertisedAlternateAddress is { } advAlt)
        {
            if (o.AlternateAddress is null)
            {
                throw new CliException($"--advertise-alternate {advAlt}: needs --alternate, the address it stands for.");
            }

            if (advAlt.AddressFamily != family)
            {
                throw new CliException($"--advertise-alternate {advAlt}: must be an {CliFlags.Family(family)} address because {listen}.");
            }
        }

        if (o.AlternatePort > 65535 || (o.AlternatePort != 0 && o.AlternatePort == o.Primary.Port))
        {
            throw new CliException($"--alternate-port {o.AlternatePort}: must be 1-65535 and differ from the --listen port ({o.Primary.Port}).");
        }

        if (o.TlsPort > 65535)
        {
            throw new CliException($"--tls-port {o.TlsPort}: port is out of range; use 1-65535.");
        }

        if (!o.EnableUdp && !o.EnableTcp && o.TlsCertificate is null)
        {
            throw new CliException("--no-udp with --no-tcp leaves nothing to serve: drop one, or add --tls-cert.");
        }

        if (o.Realm is not null && o.Users.Count == 0)
        {
            throw new CliException($"--realm {o.Realm}: long-term credentials need at least one --user NAME:PASSWORD.");
        }
    }

    /// <summary>--tls-cert and --tls-key: a PKCS#12 file alone, a PEM certificate with its key (in --tls-key or in
    /// the same file).</summary>
    internal static X509Certificate2? LoadCertificate(string? cert, string? key)
    {
        if (cert is null)
        {
            return key is null
                ? null
                : throw new CliException($"--tls-key {key}: needs --tls-cert, the certificate this key belongs to.");
        }

        if (!File.Exists(cert))
        {
            throw new CliException($"--tls-cert {cert}: no such file.");
        }

        if (key is not null && !File.Exists(key))
        {
            throw new CliException($"--tls-key {key}: no such file.");
        }

        var text = File.ReadAllText(cert);
        var pem = text.Contains("-----BEGIN ", StringComparison.Ordinal);
        if (pem && key is null && !text.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new CliException($"--tls-cert {cert}: a PEM certificate needs its private key; give it with --tls-key KEY.pem.");
        }

        if (!pem && key is not null)
        {
            throw new CliException($"--tls-key {key}: is only for a PEM --tls-cert, and {cert} is not PEM (a PKCS#12 file holds its own key: drop --tls-key).");
        }

        try
        {
            return TlsSetup.LoadCertificate(cert, key);
        }
        catch (ArgumentException e)
        {
            var sentence = e.Message.Split(" (Parameter '", 2)[0];
            throw new CliException($"--tls-cert {sentence}");
        }
    }
}
