using System.Buffers.Binary;
using System.Net;
using NatKit.Stun;
using NatKit.Traversal.Ice;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>Shared set-up for the pure agent's tests: addresses, agents, candidate exchange, message decoding.</summary>
internal static class IceTestKit
{
    public static readonly IPEndPoint HostA = Ep("10.0.0.1:1000");
    public static readonly IPEndPoint HostB = Ep("10.0.0.2:2000");

    public static IPEndPoint Ep(string text) => IPEndPoint.Parse(text);

    public static IceAgent Agent(IceRole role, int seed, IceAgentOptions? options = null, ulong? tieBreaker = null) =>
        tieBreaker is { } t
            ? new IceAgent(role, options, random: new Random(seed)) { TieBreaker = t }
            : new IceAgent(role, options, random: new Random(seed));

    /// <summary>Two agents with one host candidate each, on one wire, credentials and candidates exchanged.</summary>
    public static (IceWire Wire, IceAgent A, IceAgent B) HostPair(IceAgentOptions? options = null,
        IceRole roleA = IceRole.Controlling, IceRole roleB = IceRole.Controlled, ulong? tieA = null, ulong? tieB = null)
    {
        var wire = new IceWire();
        var a = Agent(roleA, 1, options, tieA);
        var b = Agent(roleB, 2, options, tieB);
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(HostA), 0));
        Assert.True(b.AddLocalCandidate(IceCandidate.Host(HostB), 0));
        Exchange(a, b);
        return (wire, a, b);
    }

    /// <summary>What signaling does: each side gets the other's credentials and candidates.</summary>
    public static void Exchange(IceAgent a, IceAgent b)
    {
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        foreach (var c in b.LocalCandidates)
        {
            a.AddRemoteCandidate(c);
        }

        foreach (var c in a.LocalCandidates)
        {
            b.AddRemoteCandidate(c);
        }
    }

    public static bool BothConnected(IceAgent a, IceAgent b) =>
        a.State == IceAgentState.Connected && b.State == IceAgentState.Connected;

    public static StunMessage Decode(byte[] bytes) => StunMessage.Parse(bytes) ?? throw new InvalidOperationException("not STUN");

    public static bool IsRequest(byte[] bytes) =>
        StunMessageReader.TryParse(bytes, out var r) && r.Class == StunClass.Request;

    public static bool Has(byte[] bytes, ushort attribute) =>
        StunMessageReader.TryParse(bytes, out var r) && r.Contains(attribute);

    public static int ErrorCode(byte[] bytes) =>
        StunMessageReader.TryParse(bytes, out var r) && r.TryGetErrorCode(out var code, out _) ? code : 0;

    public static StunClass Class(byte[] bytes) =>
        StunMessageReader.TryParse(bytes, out var r) ? r.Class : (StunClass)255;

    public static ulong TieBreakerOf(byte[] bytes, ushort attribute) =>
        StunMessageReader.TryParse(bytes, out var r) && r.TryGet(attribute, out var v) && v.Length == 8
            ? BinaryPrimitives.ReadUInt64BigEndian(v)
            : 0;

    /// <summary>A Binding request as a peer would build it, with every knob exposed for the negative tests.</summary>
    public static byte[] Request(string username, string? password, uint? priority = 1000, ushort? role = null,
        ulong tieBreaker = 1, bool useCandidate = false, ushort extraAttribute = 0, bool fingerprint = true)
    {
        var buffer = new byte[600];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddString(StunAttributeType.Username, username);
        if (priority is { } p)
        {
            w.AddUInt32(StunAttributeType.Priority, p);
        }

        if (role is { } r)
        {
            BinaryPrimitives.WriteUInt64BigEndian(w.Reserve(r, 8), tieBreaker);
        }

        if (useCandidate)
        {
            w.Reserve(StunAttributeType.UseCandidate, 0);
        }

        if (extraAttribute != 0)
        {
            w.AddUInt32(extraAttribute, 7);
        }

        if (password is not null)
        {
            w.AddMessageIntegrity(StunCredentials.ShortTermKey(password));
        }

        if (fingerprint)
        {
            w.AddFingerprint();
        }

        return buffer[..w.Length];
    }
}
