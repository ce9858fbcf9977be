# fish completion for snaprun(1)
#
# snaprun [OPTION]... FILE [--] CMD [ARG]...
# Options stop at FILE; after FILE (and an optional --) the words are a
# command line of their own, completed as such.

# Print the position of FILE among the arguments before the cursor
# (1 = the first word after snaprun); fail if FILE is not there yet.
function __fish_snaprun_file_pos
    set -l args (commandline -opc)
    set -e args[1]
    set -l n (count $args)
    set -l i 1
    while test $i -le $n
        switch $args[$i]
            case --
                set i (math $i + 1)
                break
            case -I -c -w --placeholder --root --commit-on --on-conflict --retries --merge --wait --missing --lock-file
                set i (math $i + 1)
            case '--*'
            case -
                break
            case '-*I' '-*c' '-*w'
                # clustered short options ending in one that takes an argument
                set i (math $i + 1)
            case '-*'
            case '*'
                break
        end
        set i (math $i + 1)
    end
    test $i -le $n; and echo $i
end

function __fish_snaprun_past_file
    __fish_snaprun_file_pos >/dev/null
end

function __fish_snaprun_before_file
    not __fish_snaprun_file_pos >/dev/null
end

# Complete the command line that follows FILE (and its optional --).
function __fish_snaprun_complete_command
    set -l pos (__fish_snaprun_file_pos); or return
    set -l args (commandline -opc)
    set -e args[1]
    contains -- --clean $args[1..$pos]; and return
    set -l rest
    if test $pos -lt (count $args)
        set rest $args[(math $pos + 1)..-1]
    end
    set -l cur (commandline -ct)
    if test "$rest[1]" = --
        set -e rest[1]
    else if test (count $rest) -eq 0; and string match -q -- '-*' "$cur"
        printf '%s\t%s\n' -- 'end of snaprun arguments'
    end
    complete -C (string join ' ' -- (string escape -- $rest) "$cur")
end

complete -c snaprun -n __fish_snaprun_past_file -f -a '(__fish_snaprun_complete_command)'

set -l before -n __fish_snaprun_before_file
complete -c snaprun $before -s I -l placeholder -x -d 'String replaced by the snapshot path'
complete -c snaprun $before -l root -x -a '(__fish_complete_directories (string replace -r -- "^--root=" "" (commandline -ct)))' -d 'Ancestor directory of FILE laid out in the snapshot'
complete -c snaprun $before -s c -l commit-on -x -a '0 0,1 0-2' -d 'Exit statuses that commit'
complete -c snaprun $before -l on-conflict -x -d 'What a commit does when FILE changed meanwhile' -a "
overwrite\t'Last writer wins'
keep\t'Keep the other result'
fail\t'Drop this result, exit 75'
retry\t'Run again on a fresh snapshot'
merge\t'Merge with --merge=SCRIPT'"
complete -c snaprun $before -l retries -x -d 'Reruns for --on-conflict=retry'
complete -c snaprun $before -l merge -x -a '(__fish_complete_command)' -d 'On conflict, merge with the shell command SCRIPT'
complete -c snaprun $before -s x -l lock -d 'Serialise whole runs on FILE'
complete -c snaprun $before -s w -l wait -x -d 'Wait at most SEC seconds for the lock'
complete -c snaprun $before -s n -l nonblock -d 'Fail at once if the lock is held'
complete -c snaprun $before -l lock-file -r -F -d 'Lock this file instead of the one beside FILE'
complete -c snaprun $before -l missing -x -d 'What to do when FILE is absent' -a "
absent\t'CMD may create it'
empty\t'Start from an empty file'
error\t'Exit 125'"
complete -c snaprun $before -s f -l filter -d 'CMD filters FILE from stdin to stdout'
complete -c snaprun $before -l no-sync -d 'Skip the fsyncs'
complete -c snaprun $before -l progress -d 'Show progress on stderr, even off a terminal'
complete -c snaprun $before -l no-progress -d 'Never show progress'
complete -c snaprun $before -s k -l keep -d 'Keep the snapshot when nothing is committed'
complete -c snaprun $before -l clean -d 'Remove leftovers of dead runs beside FILE'
complete -c snaprun $before -s v -l verbose -d 'Report each step on stderr'
complete -c snaprun $before -s h -l help -d 'Print usage and exit'
complete -c snaprun $before -s V -l version -d 'Print the version and exit'
