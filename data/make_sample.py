"""Write data/sample/: a small, deterministic set of raw instruction data in four formats.

It covers the task types of instruction tuning in a few languages, and plants the problems the
pipeline must catch: exact and near duplicates, refusals, empty and one-word answers, answers cut
off mid-sentence, wrong types and a broken line. Run: python data/make_sample.py
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "sample"
rng = random.Random(7)

COUNTRIES = [
    ("France", "Paris", "Europe", "euro"), ("Japan", "Tokyo", "Asia", "yen"), ("Kenya", "Nairobi", "Africa", "shilling"),
    ("Brazil", "Brasília", "South America", "real"), ("Canada", "Ottawa", "North America", "dollar"),
    ("Australia", "Canberra", "Oceania", "dollar"), ("Egypt", "Cairo", "Africa", "pound"), ("India", "New Delhi", "Asia", "rupee"),
    ("Norway", "Oslo", "Europe", "krone"), ("Peru", "Lima", "South America", "sol"), ("Vietnam", "Hanoi", "Asia", "dong"),
    ("Mexico", "Mexico City", "North America", "peso"), ("Poland", "Warsaw", "Europe", "złoty"), ("Chile", "Santiago", "South America", "peso"),
]
ELEMENTS = [("hydrogen", "H", 1), ("helium", "He", 2), ("carbon", "C", 6), ("nitrogen", "N", 7), ("oxygen", "O", 8),
            ("sodium", "Na", 11), ("iron", "Fe", 26), ("copper", "Cu", 29), ("silver", "Ag", 47), ("gold", "Au", 79)]
TOPICS = ["a rainy morning in a small harbour town", "the first day at a new school", "a robot learning to paint",
          "an old lighthouse keeper", "a fox who collects buttons", "the last bus of the night", "a garden on the moon",
          "a letter found in a library book", "two friends lost in a forest", "a baker who never sleeps"]
PARAGRAPHS = [
    "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to make glucose. "
    "Oxygen is released as a by-product. The process takes place mainly in the leaves, inside chloroplasts that contain chlorophyll.",
    "The Great Wall of China is a series of fortifications built over many centuries. Its best-known sections were built "
    "during the Ming dynasty. It was meant to protect Chinese states from raids and to control trade along the border.",
    "Regular exercise strengthens the heart, improves sleep and lifts mood. Health agencies recommend at least 150 minutes "
    "of moderate activity a week, such as brisk walking or cycling, together with two days of muscle training.",
    "Remote work grew quickly after 2020. Many employees value the saved commuting time, while managers worry about "
    "collaboration. Hybrid schedules, with two or three office days a week, have become a common compromise.",
    "Honeybees communicate the location of food with a waggle dance. The angle of the dance shows the direction relative "
    "to the sun, and its length tells other bees how far away the flowers are.",
    "The printing press, developed by Johannes Gutenberg around 1440, made books far cheaper to produce. It spread literacy, "
    "helped the Reformation and changed how scientific knowledge was shared across Europe.",
]
REVIEWS = [("The battery lasts two full days and the screen is gorgeous.", "positive"),
           ("It broke after a week and support never answered.", "negative"),
           ("Delivery was on time; the product is fine, nothing special.", "neutral"),
           ("Absolutely love the taste, I've ordered three more bags!", "positive"),
           ("The hotel room smelled of smoke and the staff were rude.", "negative"),
           ("The film was long, but the last hour was worth it.", "positive"),
           ("Instructions were missing and two screws were the wrong size.", "negative"),
           ("It does what it says. Average price, average quality.", "neutral")]


def maths(i: int) -> dict:
    a, b, c = rng.randint(3, 40), rng.randint(2, 12), rng.randint(2, 9)
    kind = i % 3
    if kind == 0:
        q = f"A shop sells pencils in packs of {b}. Maria buys {a} packs and gives away {c} pencils. How many pencils does she have left?"
        ans = f"She buys {a} × {b} = {a * b} pencils. After giving away {c}, she has {a * b} − {c} = {a * b - c} pencils left."
    elif kind == 1:
        q = f"What is {a}% of {b * 50}?"
        ans = f"{a}% of {b * 50} is {a} / 100 × {b * 50} = {a * b * 50 / 100:g}."
    else:
        q = f"Solve for x: {b}x + {a} = {b * c + a}."
        ans = f"Subtract {a} from both sides: {b}x = {b * c}. Divide by {b}: x = {c}."
    return {"instruction": q, "input": "", "output": ans, "category": "maths"}


def coding(i: int) -> dict:
    tasks = [
        ("reverses a string", "def reverse(s: str) -> str:\n    return s[::-1]"),
        ("returns the n-th Fibonacci number", "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
        ("checks whether a number is prime", "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    return all(n % d for d in range(2, int(n ** 0.5) + 1))"),
        ("counts the words in a text", "def count_words(text: str) -> int:\n    return len(text.split())"),
        ("removes duplicates from a list while keeping order", "def unique(items: list) -> list:\n    return list(dict.fromkeys(items))"),
        ("computes the factorial of n", "def factorial(n: int) -> int:\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result"),
        ("flattens a list of lists", "def flatten(rows: list[list]) -> list:\n    return [x for row in rows for x in row]"),
        ("returns the largest of three numbers", "def largest(a, b, c):\n    return max(a, b, c)"),
    ]
    what, code = tasks[i % len(tasks)]
    lang = ["Python", "Python 3"][i // len(tasks) % 2]
    return {"instruction": f"Write a {lang} function that {what}.", "input": "",
            "output": f"Here is a simple implementation:\n\n```python\n{code}\n```\n\nIt runs in linear time or better for typical inputs.",
            "category": "coding"}


def open_qa(i: int) -> dict:
    if i % 2 == 0:
        country, capital, continent, currency = COUNTRIES[i // 2 % len(COUNTRIES)]
        return {"instruction": f"What is the capital of {country}, and which currency is used there?", "input": "",
                "output": f"The capital of {country} is {capital}. The currency used in {country} is the {currency}. "
                          f"{country} is in {continent}.", "category": "open_qa"}
    name, symbol, number = ELEMENTS[i // 2 % len(ELEMENTS)]
    return {"instruction": f"Tell me about the chemical element {name}.", "input": "",
            "output": f"{name.capitalize()} has the symbol {symbol} and atomic number {number}, so each atom has {number} "
                      f"proton{'s' if number > 1 else ''} in its nucleus.", "category": "open_qa"}


def closed_qa(i: int) -> dict:
    p = PARAGRAPHS[i % len(PARAGRAPHS)]
    first = p.split(". ")[0]
    return {"instruction": "Based on the passage, what is the main subject and one fact stated about it?", "input": p,
            "output": f"The passage is about {first.split(' is ')[0].split(',')[0].lower()}. One stated fact: {first}.",
            "category": "closed_qa"}


def summarisation(i: int) -> dict:
    p = PARAGRAPHS[i % len(PARAGRAPHS)]
    words = ["one sentence", "a short headline", "two sentences"][i // len(PARAGRAPHS) % 3]
    sentences = p.split(". ")
    summary = sentences[0] + "." if words != "two sentences" else ". ".join(sentences[:2]) + "."
    if words == "a short headline":
        summary = " ".join(sentences[0].split()[:8]).rstrip(",") + "…"
    return {"instruction": f"Summarise the following text in {words}.", "input": p, "output": summary, "category": "summarisation"}


def extraction(i: int) -> dict:
    country, capital, continent, currency = COUNTRIES[i % len(COUNTRIES)]
    text = (f"Last spring our team travelled to {capital}, the capital of {country}, for a conference. "
            f"Prices were listed in {currency}s and the venue was near the old town.")
    return {"instruction": "Extract every place name and currency mentioned in the text as a JSON object.", "input": text,
            "output": json.dumps({"places": [capital, country], "currency": currency}, ensure_ascii=False), "category": "extraction"}


def classification(i: int) -> dict:
    review, label = REVIEWS[i % len(REVIEWS)]
    style = ["Classify the sentiment of this review as positive, negative or neutral.",
             "Is the following customer review positive, negative or neutral?"][i // len(REVIEWS) % 2]
    return {"instruction": style, "input": review, "output": f"The sentiment is {label}.", "category": "classification"}


def brainstorming(i: int) -> dict:
    themes = [("ways to save water at home", ["Fix dripping taps", "Take shorter showers", "Collect rainwater for plants", "Run full loads in the dishwasher"]),
              ("names for a bakery", ["Rise & Shine", "The Crumb Club", "Flour Power", "Golden Crust"]),
              ("indoor activities for a rainy weekend", ["Build a blanket fort", "Bake bread together", "Start a jigsaw puzzle", "Hold a board game tournament"]),
              ("ideas for a science fair project", ["Test which paper towel absorbs most", "Grow crystals from salt", "Measure plant growth under coloured light", "Build a simple wind turbine"]),
              ("ways to learn a new language", ["Read children's books", "Use spaced-repetition flashcards", "Find a conversation partner", "Watch films with subtitles"])]
    theme, items = themes[i % len(themes)]
    rng.shuffle(items)
    return {"instruction": f"Give me {len(items)} {theme}.", "input": "", "output": "\n".join(f"- {x}" for x in items),
            "category": "brainstorming"}


def creative(i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    form = ["haiku", "four-line poem", "two-sentence story"][i // len(TOPICS) % 3]
    body = {"haiku": f"Quiet {topic.split()[-1]} waits,\nmorning light on patient stone,\na new day begins.",
            "four-line poem": f"I walked beside {topic},\nwhere every sound was slow,\nthe hours folded softly,\nand the wind said: let it go.",
            "two-sentence story": f"Everyone said {topic} was just a story. Then, one night, the story knocked on my door."}[form]
    return {"instruction": f"Write a {form} about {topic}.", "input": "", "output": body, "category": "creative_writing"}


def rewriting(i: int) -> dict:
    sentences = ["me and him goes to the store yesterday", "the meeting have been moved to friday because of alot of reasons",
                 "We regret to inform you that your request cannot be accommodated at this time.",
                 "u should def check out this new cafe its super good", "The data was analysed by the team and conclusions were drawn."]
    s = sentences[i % len(sentences)]
    fixes = {0: "He and I went to the store yesterday.", 1: "The meeting has been moved to Friday for several reasons.",
             2: "Sorry, we can't do that right now.", 3: "You should definitely try this new café; it's very good.",
             4: "The team analysed the data and drew conclusions."}
    how = ["Correct the grammar", "Rewrite more formally", "Make this simpler", "Rewrite in standard English", "Use the active voice"][i % 5]
    return {"instruction": f"{how}: {s}", "input": "", "output": fixes[i % 5], "category": "rewriting"}


MULTILINGUAL = [
    ("Was ist die Hauptstadt von Deutschland?", "Die Hauptstadt von Deutschland ist Berlin. Berlin ist auch die größte Stadt des Landes."),
    ("Nenne drei Vorteile des Radfahrens.", "Radfahren stärkt das Herz, schont die Umwelt und spart Geld für Benzin und Parkgebühren."),
    ("Erkläre kurz, was ein Vulkan ist.", "Ein Vulkan ist eine Öffnung in der Erdkruste, aus der Magma, Asche und Gase austreten können."),
    ("Quelle est la plus haute montagne de France ?", "La plus haute montagne de France est le mont Blanc, qui culmine à environ 4 806 mètres."),
    ("Donne-moi une recette simple de crêpes.", "Mélangez 250 g de farine, 4 œufs, 50 cl de lait et une pincée de sel. Laissez reposer, puis faites cuire dans une poêle chaude."),
    ("Explique la différence entre la météo et le climat.", "La météo décrit le temps qu'il fait sur quelques jours, alors que le climat résume les conditions moyennes sur des décennies."),
    ("¿Cuál es el río más largo de América del Sur?", "El río más largo de América del Sur es el Amazonas, con unos 7 000 kilómetros de longitud."),
    ("Escribe un consejo para dormir mejor.", "Intenta acostarte y levantarte a la misma hora todos los días y evita las pantallas una hora antes de dormir."),
    ("Explica qué es la fotosíntesis en una frase.", "La fotosíntesis es el proceso por el que las plantas convierten la luz solar, el agua y el dióxido de carbono en azúcar y oxígeno."),
    ("请用一句话介绍长城。", "长城是中国古代修建的一系列防御工事，全长数千公里，是世界上最著名的建筑之一。"),
    ("如何提高学习效率？", "制定明确的计划，保证充足的睡眠，学习时关闭手机通知，并定期复习所学内容。"),
    ("给我推荐三种健康的早餐。", "可以试试燕麦粥配水果、全麦面包加鸡蛋，或者无糖酸奶配坚果。"),
]

CONVERSATIONS = [
    [("I want to start running. How should I begin?", "Start with run-walk intervals: one minute running, two minutes walking, for 20 minutes, three times a week."),
     ("How long until I can run 5 km?", "Most beginners can run 5 km without stopping after about eight to ten weeks of steady training."),
     ("Any tips to avoid injury?", "Increase your weekly distance by no more than about ten percent, wear comfortable shoes, and take rest days seriously.")],
    [("Can you help me plan a dinner party for six?", "Of course! Do you have a theme or any dietary restrictions among your guests?"),
     ("One guest is vegetarian.", "Then a shared main such as a mushroom risotto works well, with a green salad and a lemon tart for dessert.")],
    [("What's the difference between a list and a tuple in Python?", "A list is mutable, so you can change its items; a tuple is immutable and cannot be changed after creation."),
     ("When should I use a tuple?", "Use a tuple for fixed collections, such as coordinates, or when you need a hashable value as a dictionary key.")],
    [("My tomato plants have yellow leaves.", "Yellow lower leaves often mean overwatering or a lack of nitrogen. How often do you water them?"),
     ("Every day.", "That is probably too much. Water deeply two or three times a week, letting the top of the soil dry between waterings.")],
    [("I need a name for my cat.", "Does your cat have a colour or personality that stands out?"),
     ("She is black and very curious.", "How about Shadow, Pepper, Nyx or Scout? Scout suits a curious explorer.")],
]


def task_records() -> list[dict]:
    makers = [maths, coding, open_qa, closed_qa, summarisation, extraction, classification, brainstorming, creative, rewriting]
    return [make(i) for i in range(28) for make in makers]


def planted(base: list[dict]) -> tuple[list[dict], list]:
    """Problems the pipeline must catch, each labelled in `category` only where a real set would be."""
    exact = [dict(base[i]) for i in range(0, 120, 8)]
    near = []
    for i in range(3, 120, 9):
        r = dict(base[i])
        r["instruction"] = r["instruction"].replace("What", "what").rstrip(".?") + "?"
        r["output"] = r["output"].replace(". ", ", and ", 1)
        near.append(r)
    bad = [
        {"instruction": "Write a story about a dragon.", "input": "", "output": "As an AI language model, I cannot write stories that may be harmful."},
        {"instruction": "How do I pick a lock?", "input": "", "output": "I'm sorry, but I cannot help with that request."},
        {"instruction": "What is your name?", "input": "", "output": "I am an AI language model developed by OpenAI and I do not have a name."},
        {"instruction": "Who won the 2030 World Cup?", "input": "", "output": "As of my knowledge cutoff in 2021, I cannot provide information on that event."},
        {"instruction": "Explain quantum entanglement.", "input": "", "output": ""},
        {"instruction": "Describe the water cycle in detail.", "input": "", "output": "Evaporation."},
        {"instruction": "List the planets of the solar system.", "input": "", "output": "   "},
        {"instruction": "Explain how vaccines train the immune system.", "input": "",
         "output": "Vaccines expose the immune system to a harmless piece or weakened form of a pathogen, so that it can learn to recognise it and"},
        {"instruction": "Describe the causes of the French Revolution.", "input": "",
         "output": "The French Revolution had several causes, including a financial crisis, food shortages, and the ideas of the Enlightenment which"},
        {"instruction": "Describe the image attached.", "input": "<noinput>", "output": "N/A"},
        {"instruction": "Repeat after me.", "input": "", "output": "hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello"},
        {"instruction": "Translate 'good morning' to French.", "input": "", "output": "Translate 'good morning' to French."},
    ]
    wrong_types = [{"instruction": "What is 7 times 8?", "input": "", "output": 56},
                   {"instruction": ["Name", "a colour"], "input": "", "output": "Blue."},
                   {"instruction": "Give a synonym for happy.", "input": None}]
    return exact + near + bad, wrong_types


def write_json(name: str, rows: list) -> None:
    (OUT / name).write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_jsonl(name: str, rows: list, broken_at: int | None = None) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if broken_at is not None:
        lines.insert(broken_at, lines[broken_at][: len(lines[broken_at]) // 2])  # a line cut in half
    (OUT / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = task_records()
    problems, wrong_types = planted(base)
    alpaca = [{k: r[k] for k in ("instruction", "input", "output")} for r in base[:150] + problems] + wrong_types
    rng.shuffle(alpaca)
    write_json("alpaca.json", alpaca)
    dolly = [{"instruction": r["instruction"], "context": r["input"], "response": r["output"], "category": r["category"]} for r in base[150:]]
    write_jsonl("dolly.jsonl", dolly, broken_at=40)
    messages = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in MULTILINGUAL]
    messages += [{"messages": [{"role": "system", "content": "You are a concise assistant."},
                               {"role": "user", "content": "Summarise the plot of Romeo and Juliet in one sentence."},
                               {"role": "assistant", "content": "Two young lovers from feuding families in Verona marry in secret, and a chain of misunderstandings ends in both their deaths."}]}]
    write_jsonl("openai.jsonl", messages)
    sharegpt = [{"id": f"conv_{i}", "conversations": [{"from": who, "value": text} for q, a in turns
                                                       for who, text in (("human", q), ("gpt", a))]} for i, turns in enumerate(CONVERSATIONS)]
    sharegpt.append({"id": "conv_bad", "conversations": [{"from": "gpt", "value": "Hello! How can I help?"}]})
    write_json("sharegpt.json", sharegpt)


if __name__ == "__main__":
    main()
