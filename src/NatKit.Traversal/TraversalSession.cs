using System.Globalization;
using System.Net;
using System.Text;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Ice;

namespace NatKit.Traversal;

/// <summary>
/// What one side of a connection tells the other through the rendezvous (the offer and the answer): its ICE
/// credentials, its NAT's profile, its candidates, the port its next mapping will get when its NAT allocates
/// sequentially (<see cref="Predicted"/>), and how many sockets it opens for birthday probing
/// (<see cref="BirthdaySockets"/>). The text form is one `name:value` line each, candidates in RFC 8839's form:
/// <code>
/// ice-ufrag:Fx3k
/// ice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e
/// nat:apdm-seq:+1@198.51.100.1:40003
/// predicted:198.51.100.1 40004
/// sockets:0
/// candidate:Yk3lQ0pB 1 udp 2130706431 192.168.1.10 40000 typ host
/// </code>
/// It comes from a peer: <see cref="TryParse"/> never throws, and refuses more than <see cref="MaxCandidates"/>
/// candidates or lines it does not understand.
/// </summary>
public sealed record TraversalSession(IceCredentials Credentials, NatProfile Nat, IReadOnlyList<IceCandidate> Candidates,
    IPEndPoint? Predicted, int BirthdaySockets)
{
    /// <summary>Most candidates one side sends (the offer must fit a rendezvous message).</summary>
    public const int MaxCandidates = 8;

    /// <summary>Most birthday sockets a side may claim (a peer's claim only sizes how long the other side probes).</summary>
    public const int MaxBirthdaySockets = 4096;

    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append("ice-ufrag:").Append(Credentials.Ufrag).Append('\n');
        text.Append("ice-pwd:").Append(Credentials.Password).Append('\n');
        text.Append("nat:").Append(Nat).Append('\n');
        if (Predicted is { } p)
        {
            text.Append("predicted:").Append(p.Address).Append(' ').Append(p.Port.ToString(CultureInfo.InvariantCulture))
                .Append('\n');
        }

        text.Append("sockets:").Append(BirthdaySockets.ToString(CultureInfo.InvariantCulture)).Append('\n');
        foreach (var c in Candidates.Take(MaxCandidates))
        {
            text.Append(IceCandidateSdp.Format(c)).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>Parses a peer's session; false with a reason for anything malformed.</summary>
    public static bool TryParse(string? text, out TraversalSession session, out string error)
    {
        session = null!;
        error = "";
        if (string.IsNullOrEmpty(text))
        {
            error = "empty session";
            return false;
        }

        string? ufrag = null, pwd = null;
        var nat = NatProfile.Unknown;
        IPEndPoint? predicted = null;
        var sockets = 0;
        var candidates = new List<IceCandidate>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                error = "a line without a name";
                return false;
            }

            var name = line[..colon];
            var value = line[(colon + 1)..];
            switch (name)
            {
                case "ice-ufrag":
                    ufrag = value;
                    break;
                case "ice-pwd":
                    pwd = value;
                    break;
                case "nat":
                    if (!NatProfile.TryParse(value, out nat))
                    {
                        error = "a bad nat profile";
                        return false;
                    }

                    break;
                case "predicted":
                    if (!TryParseEndPoint(value, out predicted))
                    {
                        error = "a bad predicted endpoint";
                        return false;
                    }

                    break;
                case "sockets":
                    if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out sockets) ||
                        sockets > MaxBirthdaySockets)
                    {
                        error = "a bad socket count";
                        return false;
                    }

                    break;
                case "candidate":
                    if (candidates.Count >= MaxCandidates)
                    {
                        error = $"more than {MaxCandidates} candidates";
                        return false;
                    }

                    if (!IceCandidateSdp.TryParse(line, out var candidate, out var why))
                    {
                        error = "a bad candidate: " + why;
                        return false;
                    }

                    candidates.Add(candidate);
                    break;
                default:
                    error = "an unknown line";
                    return false;
            }
        }

        if (!IceCredentials.IsValidUfrag(ufrag) || !IceCredentials.IsValidPassword(pwd))
        {
            error = "missing or bad ICE credentials";
            return false;
        }

        session = new TraversalSession(new IceCredentials(ufrag!, pwd!), nat, candidates, predicted, sockets);
        return true;
    }

    private static bool TryParseEndPoint(string value, out IPEndPoint? endPoint)
    {
        endPoint = null;
        var space = value.IndexOf(' ', StringComparison.Ordinal);
        if (space <= 0 || !IPAddress.TryParse(value.AsSpan(0, space), out var address) ||
            !int.TryParse(value.AsSpan(space + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) ||
            port is < 1 or > 65535)
        {
            return false;
        }

        endPoint = new IPEndPoint(address, port);
        return true;
    }
}
