/**
 * Shell completion scripts for bash, zsh and fish, made from the commands oclif knows: command words at each
 * level (`flotilla fl<TAB>` → `fleet`), then the flags of the command typed so far.
 */
export interface CompletableCommand {
  /** Words as typed: `fleet list`. */
  id: string
  flags: string[]
}

export const SHELLS = ['bash', 'zsh', 'fish'] as const
export type Shell = (typeof SHELLS)[number]

/** For each command path typed so far (`''`, `fleet`…), the words that may follow it. */
function nextWords(commands: CompletableCommand[]): Map<string, string[]> {
  const next = new Map<string, Set<string>>()
  for (const {id} of commands) {
    const words = id.split(' ')
    for (let index = 0; index < words.length; index++) {
      const path = words.slice(0, index).join(' ')
      if (!next.has(path)) next.set(path, new Set())
      next.get(path)?.add(words[index])
    }
  }

  return new Map([...next].map(([path, words]) => [path, [...words].sort()]))
}

function quote(text: string): string {
  return `'${text.replaceAll("'", String.raw`'\''`)}'`
}

function caseTable(entries: Array<[string, string[]]>, indent: string): string {
  return entries.map(([key, words]) => `${indent}${quote(key)}) echo ${quote(words.join(' '))} ;;`).join('\n')
}

function bashScript(bin: string, commands: CompletableCommand[]): string {
  const fn = `_${bin.replaceAll(/\W/g, '_')}`
  const next = [...nextWords(commands)]
  return `# ${bin} completion for bash: source it, or save it as ~/.local/share/bash-completion/completions/${bin}
${fn}_next() {
  case "$1" in
${caseTable(next, '    ')}
  esac
}
${fn}_flags() {
  case "$1" in
${caseTable(commands.map((command) => [command.id, command.flags]), '    ')}
  esac
}
${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' word candidate i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    [[ $word == -* ]] && continue
    candidate=\${path:+$path }$word
    [[ " $(${fn}_next "$path") " == *" $word "* ]] || break
    path=$candidate
  done
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(${fn}_flags "$path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(${fn}_next "$path")" -- "$cur"))
  fi
}
complete -o default -F ${fn} ${bin}
`
}

function zshScript(bin: string, commands: CompletableCommand[]): string {
  return `# ${bin} completion for zsh: source it from ~/.zshrc (it uses zsh's bash completion support)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashScript(bin, commands).split('\n').slice(1).join('\n')}`
}

function fishScript(bin: string, commands: CompletableCommand[]): string {
  const fn = `__${bin.replaceAll(/\W/g, '_')}`
  const cases = (entries: Array<[string, string[]]>) =>
    entries.map(([key, words]) => `    case ${quote(key)}\n      printf '%s\\n' ${words.map(quote).join(' ')}`).join('\n')
  return `# ${bin} completion for fish: save it as ~/.config/fish/completions/${bin}.fish
function ${fn}_next
  switch $argv[1]
${cases([...nextWords(commands)].filter(([, words]) => words.length > 0))}
  end
end
function ${fn}_flags
  switch $argv[1]
${cases(commands.filter((command) => command.flags.length > 0).map((command) => [command.id, command.flags]))}
  end
end
function ${fn}_complete
  set -l path ''
  for word in (commandline -opc)[2..-1]
    string match -q -- '-*' $word; and continue
    contains -- $word (${fn}_next $path); or break
    set path (string trim -- "$path $word")
  end
  if string match -q -- '-*' (commandline -ct)
    ${fn}_flags $path
  else
    ${fn}_next $path
  end
end
complete -c ${bin} -f -a '(${fn}_complete)'
`
}

export function completionScript(shell: Shell, bin: string, commands: CompletableCommand[]): string {
  const sorted = [...commands].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  if (shell === 'bash') return bashScript(bin, sorted)
  if (shell === 'zsh') return zshScript(bin, sorted)
  return fishScript(bin, sorted)
}
