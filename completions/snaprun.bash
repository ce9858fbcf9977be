# bash completion for snaprun(1)                           -*- shell-script -*-
#
# snaprun [OPTION]... FILE|DIR [--] CMD [ARG]...
# Options stop at FILE; after FILE (and an optional --) the words are a
# command line of their own, completed as such.
# Without the bash-completion package (no _init_completion), plain bash
# gets simple completion: options, their values, files and command names.

# Plain bash: the words as _init_completion -s would give them ("--opt=val"
# one word, then split into prev and cur), from COMP_WORDS, which has "="
# as a word of its own.
_snaprun_plain_words()
{
    local i w
    words=() cword=0 split=false
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        if ((i > 1)) && [[ $w == = && ${words[-1]} == --* ||
            ${words[-1]} == --*= && $w != = ]] && ((i <= COMP_CWORD)); then
            words[-1]+=$w
        else
            words+=("$w")
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    cur=${words[cword]} prev=${words[cword - 1]}
    if [[ $cur == --*=* ]]; then
        prev=${cur%%=*} cur=${cur#*=} split=true
    fi
}

# Files (-d: directories), with bash-completion's _filedir when it is there.
_snaprun_files()
{
    if declare -F _filedir >/dev/null; then
        _filedir "$@"
    elif [[ ${1-} == -d ]]; then
        COMPREPLY=($(compgen -d -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}

_snaprun()
{
    local cur prev words cword split
    if declare -F _init_completion >/dev/null; then
        _init_completion -s || return
    else
        _snaprun_plain_words
    fi

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
                --on-conflict | --retries | --merge | --wait | --missing | --lock-file)
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
        if declare -F _command_offset >/dev/null; then
            _command_offset $j
        elif ((cmd == cword)); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            _snaprun_files
        fi
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
            _snaprun_files -d
            return
            ;;
        --lock-file)
            _snaprun_files
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
            --lock-file= --missing= -f --filter --no-sync --progress
            --no-progress -k --keep --clean -v --verbose -h --help
            -V --version' -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
        return
    fi

    _snaprun_files
} &&
    complete -F _snaprun snaprun

# ex: filetype=sh
