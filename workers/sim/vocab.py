"""Vocabulary of the synthetic streams (see ``workers.sim.synth``).

Plain data: per-label templates with ``{slot}`` placeholders, the slot fillers, and the
label frequencies before and after drift. Everything here is invented for this project;
the moderation wording is deliberately tame (placeholder insults, fictional groups, no
slurs, nothing graphic) because it is test data.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- slot fillers

SLOTS: dict[str, list[str]] = {
    "product": ["Orbit Router", "Lumen Desk Lamp", "Pocket Scanner", "Vela Headphones",
                "Trailblazer Backpack", "Kettle Pro", "SmartPlug Mini", "Atlas Monitor",
                "Cobalt Keyboard", "Harbor Coffee Grinder", "Pixel Frame", "Nova Speaker"],
    "app": ["the mobile app", "the desktop app", "the web dashboard", "the iOS app",
            "the Android app", "the browser extension"],
    "plan": ["Basic plan", "Pro plan", "Team plan", "annual plan", "monthly plan",
             "Family plan"],
    "amount": ["$9.99", "$14.50", "$29.00", "$49.99", "$120.00", "$7.25", "$89.90",
               "$240.00", "EUR 19.00", "GBP 35.00"],
    "date": ["March 3", "Monday", "the 14th", "May 2", "the 28th", "June 21", "Friday",
             "the first of the month", "October 9", "Sunday"],
    "days": ["three", "five", "seven", "ten", "twelve", "two", "fourteen"],
    "name": ["Maria", "James", "Aiko", "Tomasz", "Priya", "Liam", "Fatima", "Chen",
             "Olga", "Diego", "Sam", "Noor", "Kwame", "Ingrid"],
    "carrier": ["UPS", "FedEx", "DHL", "the postal service", "the courier"],
    "device": ["iPhone 13", "Pixel 7", "Galaxy S22", "MacBook Air", "Windows laptop",
               "iPad", "Chromebook"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge"],
    "error": ["error 500", "error code E-42", "a blank white screen", "'something went wrong'",
              "a timeout", "error 0x80070005", "'invalid session'"],
    "feature": ["dark mode", "export to CSV", "a calendar integration", "bulk editing",
                "offline mode", "custom tags", "an API for reports", "shared folders"],
    "country": ["Germany", "Canada", "Brazil", "Japan", "Spain", "Australia", "Kenya"],
    "city": ["Lisbon", "Denver", "Osaka", "Leeds", "Austin", "Lyon", "Pune"],
    "card": ["Visa", "Mastercard", "Amex", "debit card", "PayPal account"],
    "color": ["black", "blue", "size M", "size L", "white", "green"],
}

# Drift replaces these slots' fillers: a new product line and new apps appear.
DRIFT_SLOTS: dict[str, list[str]] = {
    "product": ["Nimbus Hub", "AeroSync Buds", "Quanta Watch", "Ember Air Fryer",
                "Zephyr Drone", "Halo Doorbell", "Strata Tablet", "Flux Charger"],
    "app": ["the new Nimbus app", "the Quanta companion app", "the AeroSync app",
            "the smart home portal"],
    "plan": ["Nimbus+ subscription", "Quanta Care plan", "Unlimited bundle"],
    "error": ["error NX-17", "a sync loop", "'device not paired'", "firmware 4.2 crash"],
}

# ------------------------------------------------------------------------------- tickets

TICKET_WEIGHTS: dict[str, float] = {
    "billing": 0.18, "technical_issue": 0.17, "shipping": 0.16, "refunds": 0.09,
    "account_access": 0.08, "password_reset": 0.08, "returns": 0.07, "bug_report": 0.06,
    "cancellation": 0.05, "feature_request": 0.03, "data_privacy": 0.015,
    "security_incident": 0.015,
}

# After drift: a product launch brings technical problems, bugs and a phishing wave;
# a new warehouse makes shipping calmer.
TICKET_WEIGHTS_DRIFT: dict[str, float] = {
    "billing": 0.14, "technical_issue": 0.22, "shipping": 0.10, "refunds": 0.08,
    "account_access": 0.08, "password_reset": 0.07, "returns": 0.06, "bug_report": 0.10,
    "cancellation": 0.07, "feature_request": 0.04, "data_privacy": 0.015,
    "security_incident": 0.025,
}

# Queues whose wording overlaps: an item may borrow a sentence from its sibling, and an
# ambiguous item is written only in the overlap.
TICKET_SIBLINGS: dict[str, str] = {
    "billing": "refunds", "refunds": "billing",
    "account_access": "password_reset", "password_reset": "account_access",
    "technical_issue": "bug_report", "bug_report": "technical_issue",
    "shipping": "returns", "returns": "shipping",
    "cancellation": "billing", "feature_request": "technical_issue",
    "data_privacy": "cancellation", "security_incident": "account_access",
}

TICKET_SUBJECTS: dict[str, list[str]] = {
    "billing": ["Question about my invoice", "Charged twice this month", "Wrong amount on bill",
                "Update payment method", "Invoice for {plan}", "Unexpected charge of {amount}",
                "Billing question", "Pricing for {plan}"],
    "refunds": ["Refund request", "Money back for order {order}", "Please refund {amount}",
                "Refund not received yet", "Requesting a refund", "Where is my refund?"],
    "account_access": ["Can't log in", "Account locked", "Two-factor code not arriving",
                       "Locked out of my account", "Login problem", "2FA issue"],
    "password_reset": ["Password reset", "Forgot my password", "Reset link not working",
                       "Reset link expired", "Need to reset password", "Password help"],
    "shipping": ["Where is my order?", "Order {order} not delivered", "Tracking not updating",
                 "Delivery delayed", "Package late", "Shipping status for {order}"],
    "returns": ["Return request", "How do I return {product}", "Need a return label",
                "Exchange for a different size", "Return for order {order}",
                "Sending an item back"],
    "technical_issue": ["{product} not working", "App keeps crashing", "Can't connect",
                        "Problem with {app}", "{product} stopped working", "Sync not working"],
    "bug_report": ["Bug report", "Bug: {error} when saving", "Reproducible crash in {app}",
                   "Found a bug", "Button does nothing", "Defect in export"],
    "feature_request": ["Feature request", "Suggestion: {feature}", "Please add {feature}",
                        "Idea for {app}", "Would love {feature}", "Product feedback"],
    "cancellation": ["Cancel my subscription", "Cancellation request", "Cancel order {order}",
                     "Please cancel {plan}", "Stop my membership", "How do I cancel?"],
    "data_privacy": ["GDPR request", "Delete my personal data", "Data export request",
                     "Privacy question", "Right to be forgotten", "What data do you hold?"],
    "security_incident": ["Suspicious activity on my account", "Account hacked",
                          "Unauthorized purchase", "Phishing email in your name",
                          "Someone changed my email", "Fraud alert"],
}

TICKET_SENTENCES: dict[str, list[str]] = {
    "billing": [
        "My invoice for {date} shows {amount} but my {plan} should cost less.",
        "I was billed for the {plan} even though I switched plans.",
        "Can you send me a copy of the invoice with our VAT number on it?",
        "My {card} was declined when paying the monthly fee.",
        "I want to update the payment method on file to a new {card}.",
        "Why did the price of the {plan} go up?",
        "The billing page shows a balance of {amount} that I do not understand.",
        "Please explain the line item called 'service fee' on my invoice.",
        "Do you offer annual billing for the {plan}?",
        "The tax on my invoice looks wrong for {country}.",
    ],
    "refunds": [
        "I would like a refund of {amount} for order {order}.",
        "Please give me my money back, the {product} was not what I ordered.",
        "You promised a refund on {date} and it still has not arrived.",
        "How long does a refund take to reach my {card}?",
        "I returned the {product} weeks ago, when will I be refunded?",
        "I want a full refund, the service was down for {days} days.",
        "Can the refund go to my original {card}?",
        "The refund I got was only part of what I paid.",
        "I am asking for reimbursement of the {amount} I paid.",
    ],
    "account_access": [
        "I cannot log in to my account, it says my account is locked.",
        "The two-factor code never arrives on my phone.",
        "I lost my phone and now I cannot pass two-factor authentication.",
        "After too many attempts my account got locked.",
        "The login page just reloads when I sign in with {browser}.",
        "I cannot sign in since I changed my phone number.",
        "My authenticator app was reset and I am locked out.",
        "Single sign-on fails for our team with {error}.",
        "It says my username does not exist but I have used it for years.",
    ],
    "password_reset": [
        "I forgot my password and need to reset it.",
        "The password reset link in the email has expired.",
        "I never receive the reset password email.",
        "When I click the reset link it says the token is invalid.",
        "I reset my password but the new one is not accepted.",
        "Can you send me a new password reset link to my work email?",
        "The reset form says my new password is too weak but it is long.",
        "I changed my password on {date} and now I forgot it again.",
    ],
    "shipping": [
        "My order {order} was supposed to arrive on {date} and it is still not here.",
        "The tracking number from {carrier} has not updated in {days} days.",
        "Where is my package? It shows as shipped but nothing arrived.",
        "{carrier} says the parcel was delivered but I never got it.",
        "Can I change the delivery address for order {order}?",
        "Do you ship to {country} and how long does it take?",
        "The package is stuck in customs in {country}.",
        "Delivery to {city} is delayed again.",
        "Can you expedite shipping on order {order}?",
    ],
    "returns": [
        "I would like to return the {product}, it is the wrong {color}.",
        "Please send me a return label for order {order}.",
        "Can I exchange the {product} for one in {color}?",
        "How many days do I have to send an item back?",
        "The return portal does not accept my order number {order}.",
        "I dropped the return off with {carrier} on {date}.",
        "The {product} arrived damaged and I want to send it back.",
        "Do I need the original box to return the {product}?",
        "I want to swap it for another model.",
    ],
    "technical_issue": [
        "The {product} will not turn on after charging.",
        "{app} keeps crashing on my {device}.",
        "The {product} does not connect to wifi anymore.",
        "Since the update the {product} is very slow.",
        "Sync between {app} and the {product} stopped working.",
        "I see {error} whenever I open {app}.",
        "The {product} disconnects every few minutes.",
        "My {device} cannot find the {product} over bluetooth.",
        "The screen of the {product} flickers.",
        "Notifications from {app} stopped working on my {device}.",
    ],
    "bug_report": [
        "Steps to reproduce: open {app}, click export, and it fails with {error}.",
        "Clicking save twice creates a duplicate record, every time.",
        "The date picker shows the wrong month in {browser}.",
        "Expected the list to be sorted by name, actual order is random.",
        "The export button does nothing in {browser} version 120.",
        "Reproducible: uploading a file over 10 MB gives {error}.",
        "There is a typo in the settings page and the toggle is mislabeled.",
        "The total in the report is off by one when filtering by {date}.",
        "Attached a screenshot, the layout breaks on {device}.",
    ],
    "feature_request": [
        "It would be great if you could add {feature}.",
        "Please consider supporting {feature} in {app}.",
        "Any plans for {feature}? Our team needs it.",
        "A suggestion: let us set {feature} per project.",
        "I would pay more for {feature}.",
        "Could you add an option to hide completed items?",
        "We would love integration with our calendar and {feature}.",
        "Feature idea: keyboard shortcuts for everything.",
    ],
    "cancellation": [
        "Please cancel my {plan} at the end of this period.",
        "I want to cancel order {order} before it ships.",
        "How do I cancel my subscription? I cannot find the button.",
        "Stop my membership, I no longer need the service.",
        "Cancel the automatic renewal of my {plan}.",
        "I am closing our team account, please cancel everything.",
        "I signed up by mistake, please cancel it.",
        "Do not renew my {plan} next month.",
    ],
    "data_privacy": [
        "Under GDPR I request a copy of all personal data you hold about me.",
        "Please delete my personal data and confirm in writing.",
        "I want to exercise my right to be forgotten.",
        "Who do you share my personal data with?",
        "Please export all my data in a machine-readable format.",
        "Remove my email address from all your databases.",
        "I did not consent to my data being used for marketing.",
        "What is your data retention period for customer records?",
    ],
    "security_incident": [
        "Someone logged into my account from {country} and it was not me.",
        "There are purchases of {amount} on my account that I did not make.",
        "My email address on the account was changed without my permission.",
        "I got a phishing email pretending to be you asking for my card number.",
        "I think my account has been hacked.",
        "An unknown device was added to my account on {date}.",
        "Fraudulent orders were placed with my saved {card}.",
        "I received a login alert from a city I have never been to.",
    ],
}

# Sentences that fit both queues of a sibling pair (keyed by the sorted pair).
TICKET_SHARED: dict[tuple[str, str], list[str]] = {
    ("billing", "refunds"): [
        "I was charged {amount} twice on {date}.",
        "There is a charge of {amount} on my {card} that I do not recognise.",
        "The payment for order {order} went through two times.",
        "Please look at the charge from {date}, it seems wrong.",
    ],
    ("account_access", "password_reset"): [
        "I cannot get into my account.",
        "I have tried to log in many times and it does not accept my password.",
        "The email with the link never comes.",
        "I am stuck on the sign in screen.",
    ],
    ("bug_report", "technical_issue"): [
        "{app} shows {error} on my {device}.",
        "It stopped working after the latest update.",
        "The {product} freezes when I open the settings.",
        "Something is broken with {app}.",
    ],
    ("returns", "shipping"): [
        "The {product} from order {order} arrived late and damaged.",
        "The parcel with {carrier} has been sitting in a depot for {days} days.",
        "I got the wrong item in order {order}.",
        "What is the status of my package?",
    ],
    ("billing", "cancellation"): [
        "I do not want to be charged for the {plan} again.",
        "Please make sure I am not billed next month.",
    ],
    ("feature_request", "technical_issue"): [
        "{app} does not let me use {feature}.",
        "It would help if {app} worked better on my {device}.",
    ],
    ("cancellation", "data_privacy"): [
        "Please close my account and remove my details.",
        "I want to delete my account.",
    ],
    ("account_access", "security_incident"): [
        "I got an email that my password was changed but I did not do it.",
        "I am locked out and I think someone else got in.",
    ],
}

# After drift, new phrasings join each queue (one may be used per item).
TICKET_DRIFT_SENTENCES: dict[str, list[str]] = {
    "billing": ["My {plan} renewal charged the bundle price instead of the promo.",
                "The in-app purchase on {app} billed me {amount}.",
                "Wallet top-up of {amount} shows as pending on my statement.",
                "Why is the {product} subscription fee on my statement?"],
    "refunds": ["Pls reverse the {amount} charge and credit it back to my wallet.",
                "Refund the {product} preorder, I changed my mind.",
                "Store credit is not ok, I want cash back for the {product}.",
                "Chargeback pending, need the {amount} back."],
    "account_access": ["Passkey sign in fails on {app}.",
                       "The magic link login on {app} loops back to the start.",
                       "Face unlock for {app} says unknown user.",
                       "Device trust expired and {app} keeps booting me out."],
    "password_reset": ["The passkey reset flow in {app} never finishes.",
                       "The reset code by text message is rejected.",
                       "Need a new PIN for {app}, forgot the old one.",
                       "Recovery phrase lost, how do I set new credentials?"],
    "shipping": ["The drone delivery slot for my {product} was skipped.",
                 "Locker pickup code for my {product} never came.",
                 "Same-day courier for the {product} is a no-show.",
                 "ETA in {app} keeps jumping for my {product}."],
    "returns": ["The QR return code for the {product} will not scan at the locker.",
                "Trade-in of my old device for the {product}, how do I ship it back?",
                "Want to swap the {product} for the bigger one, is there a QR code for that?",
                "Courier pickup for my {product} return was missed."],
    "technical_issue": ["The {product} will not pair with {app} after firmware 4.2.",
                        "The {product} drops off the mesh network at night.",
                        "Hub is blinking amber and the {product} is unresponsive.",
                        "The {product} overheats while charging."],
    "bug_report": ["Repro: pair {product}, rename it, and {app} shows {error}.",
                   "Firmware 4.2 changelog says fixed, but the toggle still resets.",
                   "Repro steps attached: widget shows yesterday's data in {app}.",
                   "Dark theme renders white text on white in {app}."],
    "feature_request": ["Let the {product} work with voice assistants, please.",
                        "Add widgets for the {product} to {app}.",
                        "Would love automations between the {product} and the hub.",
                        "Please open an API for the {product}."],
    "cancellation": ["End my {plan} trial before it converts.",
                     "Cancel my {product} preorder.",
                     "Turn off auto-renew on the {plan}.",
                     "Unsubscribe me from the {plan} for good."],
    "data_privacy": ["Does the {product} camera footage leave my home? Delete it all.",
                     "Opt me out of AI training on my data.",
                     "Wipe the voice recordings the {product} stored.",
                     "Send me a DSAR report of everything tied to my {product}."],
    "security_incident": ["A fake {product} giveaway stole my login.",
                          "SIM swap: someone took over my number and my account.",
                          "Someone paired an unknown {product} to my home.",
                          "Strangers are viewing my {product} camera feed."],
}

OPENERS: list[str] = ["Hi,", "Hello,", "Hi team,", "Dear support,", "Good morning,",
                      "Hey there,", "To whom it may concern,", "Hello again,"]
CLOSERS: list[str] = ["Thanks.", "Thank you in advance.", "Regards, {name}", "Best, {name}",
                      "Cheers", "Please help.", "Looking forward to your reply.",
                      "Thanks, {name}"]
DRIFT_OPENERS: list[str] = ["hey, quick q:", "yo support,", "hiya -", "Hi folks!"]
DRIFT_CLOSERS: list[str] = ["ty!", "thx in advance", "asap pls", "appreciate it!! - {name}"]

FILLERS: list[str] = [
    "I have been a customer for {days} years.",
    "This is the second time I write about this.",
    "My colleague {name} had the same thing last week.",
    "Sorry for the long message.",
    "I am travelling to {city} next week so a quick answer would help.",
    "By the way your website looks great.",
    "I tried calling but the line was busy.",
    "My account email is {email}.",
]

PHONE_PREFIX: list[str] = ["Call summary:", "Phone call notes:", "Caller said:"]

CHANNEL_WEIGHTS: dict[str, float] = {"email": 0.45, "chat": 0.3, "web": 0.2, "phone": 0.05}
TIER_WEIGHTS: dict[str, float] = {"free": 0.6, "pro": 0.3, "enterprise": 0.1}

# ---------------------------------------------------------------------------- moderation

MODERATION_WEIGHTS: dict[str, float] = {
    "ok": 0.70, "spam": 0.09, "profanity": 0.07, "harassment": 0.06, "hate_speech": 0.025,
    "misinformation": 0.025, "self_harm": 0.015, "violent_threat": 0.015,
}
MODERATION_WEIGHTS_DRIFT: dict[str, float] = {
    "ok": 0.66, "spam": 0.13, "profanity": 0.06, "harassment": 0.06, "hate_speech": 0.025,
    "misinformation": 0.035, "self_harm": 0.015, "violent_threat": 0.015,
}

MOD_SLOTS: dict[str, list[str]] = {
    "user": ["@sunnyday", "@mike_r", "@lena.k", "@gamerx", "@bookworm22", "@coffeeaddict",
             "@trailrunner", "@dj_owl"],
    "thing": ["the new album", "this recipe", "the match last night", "that movie",
              "the update", "my new bike", "the concert", "this game"],
    "place": ["the park", "the library", "the mall on 5th", "the stadium", "town hall",
              "the station", "the school fair"],
    "food": ["ramen", "tacos", "pancakes", "curry", "pizza", "dumplings"],
    "insult": ["nincompoop", "dingbat", "goofball", "blorfnik", "clown shoe", "snorkelbrain",
               "wazzock", "numpty"],
    "swear": ["fudging", "flipping", "frick", "dang", "bleeping", "[expletive]", "freaking",
              "son of a biscuit"],
    "group": ["Zorblaxians", "the Quuxfolk", "Plinkonians", "the Vantari", "Glorbites"],
    "url": ["bit.ly/fr33-stuff", "win-big.example", "cheap-deals.example/now",
            "t.co/xyz123", "promo-land.example"],
    "gift": ["iPhone", "gift card", "PS5", "$500 voucher", "designer bag"],
    "remedy": ["garlic water", "lemon peel tea", "standing in the sun", "magnet bracelets",
               "cold showers"],
    "illness": ["the flu", "diabetes", "every virus", "cancer", "allergies"],
    "claim": ["the moon is hollow", "birds are government drones",
              "the election was decided by aliens", "vaccines contain tracking chips",
              "the ocean is fake"],
    "adj": ["amazing", "so good", "underrated", "wild", "lovely", "meh", "fantastic"],
}
MOD_DRIFT_SLOTS: dict[str, list[str]] = {
    "url": ["ai-profit.example", "quantumbot.example/join", "tg.me/moonpump"],
    "gift": ["free crypto airdrop", "AI trading bot licence", "limited NFT"],
    "thing": ["the Nimbus launch", "the new AI filter", "season 4 finale"],
    "remedy": ["ionized AI water", "5G shielding stickers"],
}

MODERATION_TEXTS: dict[str, list[str]] = {
    "ok": [
        "just tried {food} at the new place downtown, {adj}!",
        "anyone else think {thing} was {adj}?",
        "Great product, arrived fast and works as described.",
        "happy birthday {user}!! have a great one",
        "Does anyone know if {place} is open on Sunday?",
        "lol this made my day",
        "{thing} was {adj}, 4 stars",
        "Thanks for sharing, very helpful.",
        "this homework is killing me lol",
        "I could murder a plate of {food} right now",
        "the traffic near {place} is insane today",
        "Not my favourite but the staff were friendly.",
        "Congrats on the new job {user}!",
        "Can't wait for the weekend, meeting friends at {place}.",
        "The battery could be better, otherwise fine.",
        "that plot twist destroyed me, so {adj}",
        "Disagree with you {user}, but fair point about {thing}.",
        "Who's going to {place} later?",
    ],
    "spam": [
        "WIN a free {gift}!!! click {url} now",
        "Earn $5000 a week from home, DM me for details",
        "Buy followers cheap at {url}",
        "Limited offer: {gift} for the first 100 people -> {url}",
        "Check my profile for exclusive deals!!! {url}",
        "Congratulations, you have been selected to receive a {gift}. Claim at {url}",
        "Best prices on watches, visit {url}",
        "I made $800 today with this one trick {url}",
    ],
    "profanity": [
        "this {swear} printer jammed again",
        "what the {swear} is wrong with this update",
        "{swear} {swear} {swear}, missed the bus again",
        "oh {swear}, I dropped my phone",
        "this weather is {swear} awful",
        "the {swear} wifi died in the middle of {thing}",
        "{swear} hell, that was loud",
    ],
    "harassment": [
        "{user} you are such a {insult}, nobody likes you",
        "shut up {user}, you absolute {insult}",
        "{user} log off forever, {insult}",
        "everyone laugh at {user}, what a {insult}",
        "{user} is the biggest {insult} on this site",
        "nobody asked you {user}, go away {insult}",
        "{user} you are pathetic and your posts are trash",
    ],
    "hate_speech": [
        "all {group} are worthless and should be banned from here",
        "{group} do not deserve the same rights as us",
        "never hire {group}, they are all the same",
        "I can't stand {group}, send them all back",
        "{group} are ruining this country",
    ],
    "misinformation": [
        "{remedy} cures {illness}, doctors don't want you to know",
        "FACT: {claim}. do your own research",
        "scientists finally admitted {claim}",
        "share before they delete this: {claim}",
        "drinking {remedy} every day makes you immune to {illness}",
    ],
    "self_harm": [
        "i don't want to be here anymore",
        "thinking about ending it all tonight",
        "nobody would miss me if i was gone",
        "i keep wanting to hurt myself again",
        "what's the point of going on, i'm done",
        "i have been planning how to end my life",
    ],
    "violent_threat": [
        "{user} i know where you live, watch your back",
        "I'm going to show up at {place} and hurt people",
        "keep talking {user} and I will hurt you",
        "someone should bomb {place}",
        "{user} you'll regret this when I find you",
        "I will make sure {place} burns down",
    ],
}

MODERATION_DRIFT_TEXTS: dict[str, list[str]] = {
    "ok": ["the Nimbus launch stream was {adj} ngl", "new AI filter is kinda fun",
           "lowkey obsessed with {thing} rn", "{user} this is so real fr",
           "no cap {food} at {place} hits different", "the Quanta Watch battery is {adj}",
           "main character energy at {place} today"],
    "spam": ["AI bot trades for you 24/7, 300% gains -> {url}",
             "claim your {gift} before midnight {url}"],
    "profanity": ["ngl this {swear} app update is mid"],
    "harassment": ["ratio + you're a {insult} {user}", "{user} imagine being this much of a "
                   "{insult}, couldn't be me", "{user} delete your account {insult}"],
    "misinformation": ["leaked: the Nimbus hub records everything and sends it to aliens"],
    "violent_threat": ["{user} touch grass or I'll make you, I know your address"],
}

# Texts that fit two labels equally well; an ambiguous item of either label uses them.
MODERATION_SHARED: dict[tuple[str, str], list[str]] = {
    ("harassment", "profanity"): ["{user} what the {swear}", "{swear} off {user}",
                                  "{user} this is {swear} ridiculous"],
    ("misinformation", "ok"): ["heard that {remedy} helps with {illness}, anyone tried it?",
                               "my aunt says {claim}, lol"],
    ("ok", "spam"): ["check out my new blog post {url}", "we are hiring, link in bio"],
    ("harassment", "violent_threat"): ["{user} you better watch it", "{user} you're done"],
    ("harassment", "hate_speech"): ["{user} you {group} are all the same"],
    ("ok", "self_harm"): ["i'm so done with everything today", "i can't do this anymore"],
}
MODERATION_SIBLINGS: dict[str, str] = {
    "ok": "spam", "spam": "ok", "profanity": "harassment", "harassment": "profanity",
    "hate_speech": "harassment", "misinformation": "ok", "self_harm": "ok",
    "violent_threat": "harassment",
}

# Short openers/closers for moderation texts (tone, not meaning).
MOD_PREFIXES: list[str] = ["", "", "", "ok so ", "honestly ", "ugh ", "PSA: ", "lmao "]
MOD_SUFFIXES: list[str] = ["", "", "", " 😂", " !!", " #mondays", " smh", " 🙄", " tbh"]

SURFACE_WEIGHTS: dict[str, float] = {"comment": 0.45, "post": 0.25, "message": 0.2,
                                     "review": 0.1}
