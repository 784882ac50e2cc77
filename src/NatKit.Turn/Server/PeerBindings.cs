using System.Net;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Server;

/// <summary>Why a ChannelBind cannot be granted (RFC 8656 section 11.2).</summary>
internal enum ChannelBindResult
{
    Ok,

    /// <summary>The number is outside 0x4000-0x4FFF.</summary>
    BadNumber,

    /// <summary>The number is bound to another peer, or the peer to another number.</summary>
    Conflict,

    /// <summary>The allocation holds as many channels as the server allows.</summary>
    Full,
}

/// <summary>
/// The permissions and channels of one allocation (RFC 8656 sections 9 and 12), with their expiry times.
/// Expiry is lazy: an entry past its time counts as absent when looked up and is dropped then, so no timer
/// walks every allocation. Lookups allocate nothing. Not thread-safe: the allocation's lock guards it.
/// Tables are created on first use, so an allocation that never relays costs little memory.
/// </summary>
internal sealed class PeerBindings
{
    private readonly int _maxPermissions;
    private readonly int _maxChannels;
    private Dictionary<IpKey, long>? _permissions;
    private Dictionary<ushort, Channel>? _byNumber;
    private Dictionary<IPEndPoint, Channel>? _byPeer;

    public PeerBindings(int maxPermissions, int maxChannels)
    {
        _maxPermissions = maxPermissions;
        _maxChannels = maxChannels;
    }

    public int PermissionCount => _permissions?.Count ?? 0;

    public int ChannelCount => _byNumber?.Count ?? 0;

    /// <summary>Installs or refreshes the permission for <paramref name="peer"/>'s address until
    /// <paramref name="expires"/>. False when the table is full of live permissions.</summary>
    public bool TryAddPermission(IPAddress peer, long expires, long now)
    {
        _permissions ??= [];
        var key = IpKey.Normalized(peer);
        if (!_permissions.ContainsKey(key) && _permissions.Count >= _maxPermissions)
        {
            Sweep(now);
            if (_permissions.Count >= _maxPermissions)
            {
                return false;
            }
        }

        _permissions[key] = expires;
        return true;
    }

    public bool HasPermission(IPAddress peer, long now)
    {
        if (_permissions is null)
        {
            return false;
        }

        var key = IpKey.Normalized(peer);
        if (!_permissions.TryGetValue(key, out var expires))
        {
            return false;
        }

        if (expires > now)
        {
            return true;
        }

        _permissions.Remove(key);
        return false;
    }

    /// <summary>Binds <paramref name="number"/> to <paramref name="peer"/> (or refreshes the same binding).</summary>
    public ChannelBindResult TryBindChannel(ushort number, IPEndPoint peer, long expires, long now)
    {
        if (number is < TurnLimits.FirstChannel or > TurnLimits.LastAcceptedChannel)
        {
            return ChannelBindResult.BadNumber;
        }

        _byNumber ??= [];
        _byPeer ??= [];
        var byNumber = LiveChannel(number, now);
        _byPeer.TryGetValue(peer, out var byPeer);
        if (byPeer is not null && byPeer.Expires <= now)
        {
            Unbind(byPeer);
            byPeer = null;
        }

        if (byNumber is not null || byPeer is not null)
        {
            if (!ReferenceEquals(byNumber, byPeer))
            {
                return ChannelBindResult.Conflict;
            }

            byNumber!.Expires = expires;
            return ChannelBindResult.Ok;
        }

        if (_byNumber.Count >= _maxChannels)
        {
            SweepChannels(now);
            if (_byNumber.Count >= _maxChannels)
            {
                return ChannelBindResult.Full;
            }
        }

        var channel = new Channel(number, peer, expires);
        _byNumber[number] = channel;
        _byPeer[peer] = channel;
        return ChannelBindResult.Ok;
    }

    /// <summary>The peer a live channel is bound to, for ChannelData from the client.</summary>
    public IPEndPoint? PeerOf(ushort number, long now) => LiveChannel(number, now)?.Peer;

    /// <summary>The channel bound to <paramref name="peer"/>, for data from the peer; 0 when none.</summary>
    public ushort ChannelOf(IPEndPoint peer, long now)
    {
        if (_byPeer is null || !_byPeer.TryGetValue(peer, out var channel))
        {
            return 0;
        }

        if (channel.Expires > now)
        {
            return channel.Number;
        }

        Unbind(channel);
        return 0;
    }

    private Channel? LiveChannel(ushort number, long now)
    {
        if (_byNumber is null || !_byNumber.TryGetValue(number, out var channel))
        {
            return null;
        }

        if (channel.Expires > now)
        {
            return channel;
        }

        Unbind(channel);
        return null;
    }

    private void Unbind(Channel channel)
    {
        _byNumber!.Remove(channel.Number);
        _byPeer!.Remove(channel.Peer);
    }

    private void Sweep(long now)
    {
        foreach (var (key, expires) in _permissions!)
        {
            if (expires <= now)
            {
                _permissions.Remove(key);
            }
        }
    }

    private void SweepChannels(long now)
    {
        foreach (var (_, channel) in _byNumber!)
        {
            if (channel.Expires <= now)
            {
                Unbind(channel);
            }
        }
    }

    private sealed class Channel(ushort number, IPEndPoint peer, long expires)
    {
        public ushort Number { get; } = number;

        public IPEndPoint Peer { get; } = peer;

        public long Expires { get; set; } = expires;
    }
}
