# bash completion for snaprun(1)                           -*- shell-script -*-
#
# snaprun [OPTION]... FILE|DIR [--] CMD [ARG]...
# Options stop at FILE; after FILE (and an optional --) the words are a
# command line of their own, completed as such.

_snaprun()
{
    local cur prev words cword split
    _init_completion -s || return

    # Find FILE: the first word that is neither an option nor an option's
    # argument, or the word after a "--" that comes before any FILE.
    local i w file=0 clean=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        case $w in
            --)
                file=$((i + 1))
                break
                ;;
            --clean) clean=1 ;;
            -I | -c | -w | --placeholder | --root | --commit-on | \
                --on-conflict | --retries | --merge | --wait | --missing)
                ((i++))
                ;;
            --*) ;;
            -?*)
                # clustered short options: the argument may follow (-xw 5)
                [[ $w == -*[Icw] ]] && ((i++))
                ;;
            *)
                file=$i
                break
                ;;
        esac
    done

    if ((file > 0 && file < cword)); then
        ((clean)) && return
        local cmd=$((file + 1))
        ((cmd < cword)) && [[ ${words[cmd]} == -- ]] && ((cmd++))
        # words[] joins "--opt=val" into one word, COMP_WORDS[] does not;
        # _command_offset counts in COMP_WORDS[].
        local j=0 acc
        for ((i = 0; i < cmd; i++)); do
            acc=${COMP_WORDS[j++]}
            while [[ $acc != "${words[i]}" ]] && ((j < COMP_CWORD)); do
                acc+=${COMP_WORDS[j++]}
            done
        done
        _command_offset $j
        # The word right after FILE may also be the optional "--".
        ((cmd == file + 1 && cmd == cword)) && [[ -- == "$cur"* ]] &&
            COMPREPLY+=(--)
        return
    fi

    case $prev in
        --on-conflict)
            COMPREPLY=($(compgen -W 'overwrite keep fail retry merge' -- "$cur"))
            return
            ;;
        --missing)
            COMPREPLY=($(compgen -W 'absent empty error' -- "$cur"))
            return
            ;;
        --root)
            _filedir -d
            return
            ;;
        -c | --commit-on)
            COMPREPLY=($(compgen -W '0 0,1 0-2' -- "$cur"))
            return
            ;;
        --merge)
            COMPREPLY=($(compgen -c -- "$cur"))
            return
            ;;
        -w | --wait | --retries | -I | --placeholder)
            # a number, or free text: nothing to offer
            return
            ;;
    esac

    $split && return

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '-I --placeholder= --root= -c --commit-on=
            --on-conflict= --retries= --merge= -x --lock -w --wait= -n --nonblock
            --missing= -f --filter --no-sync -k --keep --clean -v --verbose -h --help
            -V --version' -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
        return
    fi

    _filedir
} &&
    complete -F _snaprun snaprun

# ex: filetype=sh
